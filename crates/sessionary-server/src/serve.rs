//! `sessionary serve`: opens the store, loads or generates keys, listens, and
//! shuts down gracefully on SIGINT or SIGTERM.

use std::fs;
use std::future::IntoFuture as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessionary_core::{KeyRing, MemoryStore, SessionManager, SessionStore};

use crate::config::{AlertNotifier, AlertSettings, Secret, Settings, StoreKind};
use crate::{ApiKeys, AppState, app};

/// `println!` that never panics: a closed stdout (`sessionary | head -1`) must not
/// stop the service.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stdout().lock(), $($arg)*);
    }};
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File in the data folder holding the generated API key.
pub const API_KEY_FILE: &str = "api-key";
/// File in the data folder holding the generated data keys (`ID:BASE64`, one a line).
pub const DATA_KEYS_FILE: &str = "data-keys";

/// What can stop the service from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A file or folder could not be read or written.
    #[error("{what} {}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A key file holds something that is not a key.
    #[error("{}: {message}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the session store {}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sessionary_core::StoreError,
    },
    /// The PostgreSQL store could not be reached or set up.
    #[error("cannot open the session store at {url}")]
    Database {
        /// The URL, its password replaced by `REDACTED`.
        url: String,
        /// The cause.
        #[source]
        source: sessionary_core::StoreError,
    },
    /// The Redis store could not be reached.
    #[error("cannot open the Redis session store at {url}")]
    RedisStore {
        /// The server, password redacted.
        url: String,
        /// The cause.
        #[source]
        source: sessionary_redis::Error,
    },
    /// The demo accounts could not be loaded or created.
    #[error(transparent)]
    DemoUsers(#[from] crate::demo::DemoUsersError),
    /// The access-token keys could not be loaded or created.
    #[error("access token keys in {}", path.display())]
    TokenKeys {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sessionary_token::AccessTokenError,
    },
    /// The ID token signing keys could not be loaded or created.
    #[error("ID token keys in {}", path.display())]
    OidcKeys {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sessionary_token::AccessTokenError,
    },
    /// The OpenID Connect provider could not start (its HTTP client).
    #[error("the OpenID Connect provider")]
    Oidc(#[source] reqwest::Error),
    /// The new-device notifier could not be set up.
    #[error("new-device alerts")]
    Alerts(#[source] sessionary_notify::NotifyError),
    /// The engine refused its configuration.
    #[error(transparent)]
    Engine(#[from] sessionary_core::Error),
    /// Serving failed.
    #[error("the server failed")]
    Io(#[source] io::Error),
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ServeError {
    let path = path.to_owned();
    move |source| ServeError::File { what, path, source }
}

/// Where the API keys in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `api.keys` in the configuration (how many).
    Config(usize),
    /// Read from this file.
    File(PathBuf),
    /// Generated now and written to this file; the key is shown once at start.
    Generated(PathBuf, Secret),
}

/// Creates `dir` (owner-only on Unix) if it does not exist.
///
/// # Errors
///
/// [`ServeError::File`].
pub fn ensure_dir(dir: &Path) -> Result<(), ServeError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(file_err("cannot create folder", dir))
}

/// Writes a new owner-only (0600) file; never overwrites an existing one.
fn write_secret_file(path: &Path, contents: &str) -> Result<(), ServeError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(file_err("cannot create", path))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(file_err("cannot write", path))
}

fn read_secret_file(path: &Path) -> Result<Option<String>, ServeError> {
    match fs::read_to_string(path) {
        Ok(s) => {
            #[cfg(unix)]
            if let Ok(md) = fs::metadata(path) {
                use std::os::unix::fs::PermissionsExt as _;
                if md.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), "secret file is readable by others; chmod 600 it");
                }
            }
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err("cannot read", path)(e)),
    }
}

fn random_key() -> Result<[u8; 32], ServeError> {
    let mut k = [0u8; 32];
    sessionary_core::token::fill_random(&mut k)?;
    Ok(k)
}

/// The API keys in force: configured ones, else `<data_dir>/api-key`, else a new
/// 256-bit key written there (mode 0600).
///
/// # Errors
///
/// Unreadable or unwritable files, an empty key file.
pub fn api_keys(settings: &Settings) -> Result<(ApiKeys, ApiKeySource), ServeError> {
    if !settings.api_keys.is_empty() {
        return Ok((
            ApiKeys::new(settings.api_keys.iter().map(Secret::expose)),
            ApiKeySource::Config(settings.api_keys.len()),
        ));
    }
    let path = settings.data_dir.join(API_KEY_FILE);
    if let Some(s) = read_secret_file(&path)? {
        let keys: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if keys.is_empty() {
            return Err(ServeError::BadKeyFile {
                path,
                message: "holds no API key; delete it to have one generated".into(),
            });
        }
        return Ok((ApiKeys::new(keys), ApiKeySource::File(path)));
    }
    let key = URL_SAFE_NO_PAD.encode(random_key()?);
    write_secret_file(&path, &format!("{key}\n"))?;
    Ok((
        ApiKeys::new([&key]),
        ApiKeySource::Generated(path, Secret::new(key)),
    ))
}

/// The data key ring: configured keys, else `<data_dir>/data-keys`, else a new
/// key written there (mode 0600). The first key seals; the others only open.
///
/// # Errors
///
/// Unreadable or unwritable files, malformed keys in the file.
pub fn data_keys(settings: &Settings) -> Result<KeyRing, ServeError> {
    let (specs, path): (Vec<String>, PathBuf) = if settings.data_keys.is_empty() {
        let path = settings.data_dir.join(DATA_KEYS_FILE);
        match read_secret_file(&path)? {
            Some(s) => (
                s.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
                path,
            ),
            None => {
                let spec = KeyRing::format_key(1, &random_key()?);
                write_secret_file(
                    &path,
                    &format!("# Sessionary data keys: ID:BASE64, the first seals.\n{spec}\n"),
                )?;
                (vec![spec], path)
            }
        }
    } else {
        (
            settings
                .data_keys
                .iter()
                .map(|(_, s)| s.expose().to_owned())
                .collect(),
            PathBuf::from("data_keys"),
        )
    };
    let mut ring: Option<KeyRing> = None;
    for spec in &specs {
        let (id, key) = KeyRing::parse_key(spec).map_err(|e| ServeError::BadKeyFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        ring = Some(
            match ring {
                None => KeyRing::new(id, key),
                Some(r) => r.with_key(id, key),
            }
            .map_err(|e| ServeError::BadKeyFile {
                path: path.clone(),
                message: e.to_string(),
            })?,
        );
    }
    ring.ok_or_else(|| ServeError::BadKeyFile {
        path,
        message: "holds no data key".into(),
    })
}

/// File in the data folder holding the access-token signing keys.
pub const TOKEN_KEYS_FILE: &str = "token-keys";

/// The access-token issuer and verifier: keys from `<data_dir>/token-keys`
/// (generated with the configured algorithm on first start, mode 0600).
///
/// # Errors
///
/// [`ServeError::TokenKeys`] for unreadable, unwritable or malformed key files.
pub fn access_tokens(
    settings: &Settings,
    clock: Arc<dyn sessionary_core::Clock>,
    revocations: Arc<sessionary_token::Revocations>,
) -> Result<sessionary_token::AccessTokens, ServeError> {
    let path = settings.data_dir.join(TOKEN_KEYS_FILE);
    let t = &settings.tokens;
    let err = |source| ServeError::TokenKeys {
        path: path.clone(),
        source,
    };
    let ring = sessionary_token::KeyRing::load_or_generate(&path, t.algorithm).map_err(err)?;
    let mut builder = sessionary_token::AccessTokens::builder(&t.issuer, &t.audience, ring)
        .with_clock(clock)
        .with_default_ttl(t.access_ttl)
        .with_revocations(revocations);
    for (role, ttl) in &t.role_ttl {
        builder = builder.with_role_ttl(role, *ttl);
    }
    builder.build().map_err(err)
}

/// The new-device watcher of `[alerts]` over `manager`, with the file outbox
/// when that is the notifier; `None` for `notifier = "none"`.
///
/// # Errors
///
/// [`ServeError::Alerts`] if the notifier cannot be built.
#[allow(clippy::type_complexity)] // a pair, said once
pub fn new_device_alerts(
    settings: &AlertSettings,
    manager: SessionManager,
) -> Result<
    Option<(
        Arc<sessionary_notify::NewDeviceAlerts>,
        Option<Arc<sessionary_notify::FileOutbox>>,
    )>,
    ServeError,
> {
    let mut outbox = None;
    let notifier: Arc<dyn sessionary_notify::Notifier> = match &settings.notifier {
        AlertNotifier::None => return Ok(None),
        AlertNotifier::Outbox(path) => {
            let o = Arc::new(sessionary_notify::FileOutbox::new(path));
            outbox = Some(Arc::clone(&o));
            o
        }
        AlertNotifier::Smtp(config) => Arc::new(
            sessionary_notify::SmtpNotifier::new(config.clone()).map_err(ServeError::Alerts)?,
        ),
        AlertNotifier::Webhook {
            url,
            secret,
            timeout,
        } => Arc::new(
            sessionary_notify::WebhookNotifier::new(url, secret.expose().as_bytes(), *timeout)
                .map_err(ServeError::Alerts)?,
        ),
    };
    let alerts = sessionary_notify::NewDeviceAlerts::new(manager, notifier)
        .with_max_alerts(settings.max_per_hour);
    Ok(Some((Arc::new(alerts), outbox)))
}

/// The store the service runs on, with what must be done to close it.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store, as the engine uses it.
    pub store: Arc<dyn SessionStore>,
    /// The SQL store behind it, closed at shutdown (writes pending touches).
    sql: Option<sessionary_sql::SqlStore>,
    /// For a store shared by several nodes: how their events reach each other
    /// (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`).
    pub fanout: Option<Arc<dyn sessionary_core::Fanout>>,
}

impl OpenedStore {
    /// Closes the store: pending touches are written, connections closed.
    pub async fn close(&self) {
        if let Some(sql) = &self.sql {
            sql.close().await;
        }
    }
}

/// Opens the configured store.
///
/// # Errors
///
/// [`ServeError::Store`] if the store cannot be opened.
pub async fn open_store(settings: &Settings) -> Result<OpenedStore, ServeError> {
    match settings.store {
        StoreKind::Memory => Ok(OpenedStore {
            store: Arc::new(MemoryStore::new()),
            sql: None,
            fanout: None,
        }),
        StoreKind::Sqlite => {
            let path = &settings.store_path;
            let options =
                sessionary_sql::SqliteOptions::new().with_exclusive_cache(settings.store_exclusive);
            let sql = sessionary_sql::SqlStore::open_sqlite_with(path, options)
                .await
                .map_err(|source| ServeError::Store {
                    path: path.to_owned(),
                    source,
                })?;
            Ok(OpenedStore {
                store: Arc::new(sql.clone()),
                sql: Some(sql),
                fanout: None,
            })
        }
        StoreKind::Redis => {
            // Validated settings of this kind always have `store_redis`; without
            // it, the empty URL fails to parse and says so.
            let (url, prefix, acks, tls_ca, tls_identity) = settings
                .store_redis
                .as_ref()
                .map(|r| {
                    (
                        r.url.expose(),
                        r.key_prefix.clone(),
                        r.replica_acks,
                        r.tls_ca.as_ref().map(|(_, pem)| pem.clone()),
                        r.tls_identity
                            .as_ref()
                            .map(|i| (i.cert.clone(), i.key.expose().as_bytes().to_vec())),
                    )
                })
                .unwrap_or_default();
            let mut options = sessionary_redis::RedisOptions::new().with_key_prefix(prefix);
            if let Some((replicas, timeout)) = acks {
                options = options.with_replica_acks(replicas, timeout);
            }
            if let Some(pem) = tls_ca {
                options = options.with_tls_ca(pem);
            }
            if let Some((cert, key)) = tls_identity {
                options = options.with_tls_client_identity(cert, key);
            }
            let redis_error = |source| ServeError::RedisStore {
                url: crate::config::redact_url(url),
                source,
            };
            let fanout = sessionary_redis::RedisFanout::connect_with_options(url, &options)
                .await
                .map_err(redis_error)?;
            let store = sessionary_redis::RedisStore::connect(url, options)
                .await
                .map_err(redis_error)?;
            Ok(OpenedStore {
                store: Arc::new(store),
                sql: None,
                fanout: Some(Arc::new(fanout)),
            })
        }
        StoreKind::Postgres => {
            let Some(pg) = &settings.store_postgres else {
                // `Config::validate` never gives this kind without its settings.
                return Err(ServeError::Database {
                    url: String::new(),
                    source: sessionary_core::StoreError::backend(io::Error::other(
                        "store.url is not set",
                    )),
                });
            };
            let sql = sessionary_sql::SqlStore::connect_postgres_with(
                pg.url.expose(),
                pg.options.clone(),
            )
            .await
            .map_err(|source| ServeError::Database {
                url: crate::config::redact_url(pg.url.expose()),
                source,
            })?;
            let fanout =
                sessionary_sql::PgFanout::connect(pg.url.expose(), sessionary_sql::DEFAULT_CHANNEL)
                    .await
                    .map_err(|source| ServeError::Database {
                        url: crate::config::redact_url(pg.url.expose()),
                        source,
                    })?;
            Ok(OpenedStore {
                store: Arc::new(sql.clone()),
                sql: Some(sql),
                fanout: Some(Arc::new(fanout)),
            })
        }
    }
}

/// Installs handlers for SIGINT (Ctrl-C) and SIGTERM now, and returns a future
/// that completes when either arrives. Installing before the start banner means
/// a signal sent as soon as the service says it listens is never missed.
///
/// # Errors
///
/// If the handlers cannot be installed.
pub fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Runs the service until SIGINT or SIGTERM, printing where it listens.
///
/// # Errors
///
/// Everything that stops the service from starting (folder, keys, store, address).
pub async fn run(settings: Settings) -> Result<(), ServeError> {
    // Bind first: a taken port must not leave a generated key unshown.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    ensure_dir(&settings.data_dir)?;
    let (keys, key_source) = api_keys(&settings)?;
    let ring = data_keys(&settings)?;
    let opened = open_store(&settings).await?;
    let clock: Arc<dyn sessionary_core::Clock> = Arc::new(sessionary_core::SystemClock);
    // Ended sessions reach the access-token verifier synchronously, as an event sink.
    let revocations = sessionary_token::Revocations::new(Arc::clone(&clock));
    // Security events go to the audit log in the store, written behind.
    let audit = sessionary_core::AuditLog::spawn(Arc::clone(&opened.store), Arc::clone(&clock));
    // Lifecycle counters follow the manager's events.
    let metrics = crate::metrics::Metrics::new();
    let store = match (settings.store_near_cache, &opened.fanout) {
        (Some(max_age), Some(fanout)) => {
            let options =
                sessionary_core::near_cache::NearCacheOptions::new().with_max_age(max_age);
            let cache = sessionary_core::near_cache::NearCache::new(
                Arc::clone(&opened.store),
                Arc::clone(fanout),
                Arc::clone(&clock),
                options,
            )?;
            Arc::new(cache) as Arc<dyn SessionStore>
        }
        _ => Arc::clone(&opened.store),
    };
    // Ended sessions reach the OpenID Connect provider's logout worker (children, back-channel).
    // Only with the demo (whose session is the central one) and registered clients.
    let oidc_on = settings.demo && !settings.oidc.clients.is_empty();
    let (logout_sink, logout_queue) = crate::oidc::logout_channel();
    let code_seal = ring.clone();
    let mut builder = SessionManager::builder(store)
        .with_clock(Arc::clone(&clock))
        .with_policy(settings.policy.clone())
        .with_keys(ring)
        .with_refresh_grace(settings.tokens.refresh_grace)
        .with_event_sink(revocations.clone())
        .with_event_sink(audit.clone())
        .with_event_sink(Arc::new(metrics.clone()));
    if oidc_on {
        builder = builder.with_event_sink(logout_sink);
    }
    if let Some(fanout) = &opened.fanout {
        // Nodes sharing the store hear each other's ends and data changes.
        builder = builder.with_fanout(Arc::clone(fanout));
    }
    let manager = builder.build()?;
    // Other nodes' ends (through a store's fanout) arrive on the subscription;
    // this node's own are seen twice, which changes nothing.
    let _following = revocations.follow(manager.subscribe());
    let tokens = Arc::new(access_tokens(&settings, Arc::clone(&clock), revocations)?);
    let demo = if settings.demo {
        Some(crate::demo::DemoUsers::load_or_create(&settings.data_dir)?)
    } else {
        None
    };
    let sweeper = manager.spawn_sweeper(settings.sweep_interval);
    let audit_sweeper = spawn_audit_sweeper(
        Arc::clone(&opened.store),
        Arc::clone(&clock),
        settings.audit_retention,
        settings.sweep_interval,
    );
    let metrics_token = settings
        .metrics
        .token
        .as_ref()
        .map(|t| ApiKeys::new([t.expose()]));
    let metrics_server = match (settings.metrics.enabled, settings.metrics.listen) {
        (true, Some(maddr)) => {
            let l = tokio::net::TcpListener::bind(maddr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: maddr,
                    source,
                })?;
            let bound = l.local_addr().map_err(ServeError::Io)?;
            let router = crate::metrics_router(metrics.clone(), metrics_token.clone());
            Some((
                bound,
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, router).await {
                        tracing::warn!(error = %e, "the metrics listener failed");
                    }
                }),
            ))
        }
        _ => None,
    };
    let metrics_access = match (
        settings.metrics.enabled,
        settings.metrics.listen,
        metrics_token,
    ) {
        (true, None, Some(t)) => Some(crate::MetricsAccess::Token(Arc::new(t))),
        (true, None, None) => Some(crate::MetricsAccess::ApiKey),
        _ => None,
    };
    // The ID token keys before the banner: an RSA key takes a moment to
    // generate, and the banner should come out in one piece.
    let oidc_keys = if oidc_on {
        let path = settings.data_dir.join(crate::oidc::OIDC_KEYS_FILE);
        Some(
            crate::oidc::IdTokenKeys::load_or_generate(&path, &settings.oidc.algs())
                .map_err(|source| ServeError::OidcKeys { path, source })?,
        )
    } else {
        None
    };
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    let signal = shutdown_signal().map_err(ServeError::Io)?;
    print_banner(&settings, addr, &key_source);
    match &metrics_server {
        Some((bound, _)) => say!("  metrics:  http://{bound}/metrics"),
        None if settings.metrics.enabled => say!(
            "  metrics:  http://{addr}/metrics  (send Authorization: Bearer <{}>)",
            if settings.metrics.token.is_some() {
                "metrics.token"
            } else {
                "API key"
            }
        ),
        None => say!("  metrics:  off"),
    }
    let mut state = AppState::new(manager.clone(), keys)
        .with_metrics(metrics.clone(), metrics_access)
        .with_audit(Arc::clone(&audit))
        .with_tokens(Arc::clone(&tokens))
        .with_token_key_file(
            settings.data_dir.join(TOKEN_KEYS_FILE),
            settings.tokens.algorithm,
        );
    if let Some((alerts, outbox)) = new_device_alerts(&settings.alerts, manager.clone())? {
        state = state.with_alerts(alerts);
        if let Some(outbox) = outbox {
            state = state.with_outbox(outbox);
        }
    }
    let mut oidc_worker = None;
    let app = match demo {
        Some((users, fresh)) => {
            print_demo(&settings, addr, &fresh);
            let mut options = crate::demo::DemoOptions::new(users)
                .with_access_tokens(Arc::clone(&tokens))
                .with_trusted_proxies(settings.trusted_proxies.clone());
            if !addr.ip().is_loopback() {
                // Plain-HTTP cookies only on loopback; elsewhere the demo
                // expects HTTPS in front (a TLS-terminating proxy).
                options = options.with_https();
            }
            if let Some(keys) = oidc_keys {
                let issuer = settings
                    .oidc
                    .issuer
                    .clone()
                    .unwrap_or_else(|| format!("http://{addr}"));
                say!("  oidc:     {issuer}/.well-known/openid-configuration");
                let provider = crate::oidc::Provider::new(
                    &settings.oidc,
                    issuer,
                    keys,
                    manager.clone(),
                    Arc::clone(&tokens),
                    code_seal,
                )
                .map_err(ServeError::Oidc)?
                .with_audit(Arc::clone(&audit))
                .with_metrics(metrics.clone());
                let provider = Arc::new(provider);
                oidc_worker = Some(provider.spawn_logout_worker(logout_queue));
                options = options.with_oidc(provider);
            }
            crate::app_with_demo(state, options)
        }
        None => app(state),
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    let deadline = async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = server.into_future() => r.map_err(ServeError::Io),
        () = deadline => {
            tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
    };
    sweeper.abort();
    audit_sweeper.abort();
    if let Some(w) = oidc_worker {
        w.abort();
    }
    if let Some((_, task)) = metrics_server {
        task.abort();
    }
    // The audit entries of the last requests, before the store closes.
    audit.flush().await;
    // Writes the touches still held in memory (write-behind) before exiting.
    opened.close().await;
    if result.is_ok() {
        say!("Sessionary stopped");
    }
    result
}

/// Every `every`, forgets audit entries older than `retention`.
fn spawn_audit_sweeper(
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn sessionary_core::Clock>,
    retention: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sessionary_core::audit::sweep_expired(&*store, clock.now(), retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(entries = n, "audit entries past retention forgotten"),
                Err(e) => tracing::warn!(error = %e, "audit retention sweep failed"),
            }
        }
    })
}

fn print_demo(settings: &Settings, addr: SocketAddr, fresh: &[crate::demo::NewAccount]) {
    say!("  demo:     http://{addr}/  (the shop; sign in as a user or an admin)");
    if fresh.is_empty() {
        say!(
            "  demo users: alice (user), admin (admin); their passwords were shown at the first \
             start (delete {} for new ones)",
            settings
                .data_dir
                .join(crate::demo::DEMO_USERS_FILE)
                .display()
        );
    } else {
        for a in fresh {
            say!(
                "  demo user: {:<6} password {}  (role {}; shown once)",
                a.name,
                a.password,
                a.role
            );
        }
    }
    if !addr.ip().is_loopback() {
        say!("  demo cookies are Secure: put HTTPS in front, or listen on 127.0.0.1");
    }
}

fn print_banner(settings: &Settings, addr: SocketAddr, keys: &ApiKeySource) {
    let url = format!("http://{addr}");
    say!("Sessionary listening on {url}");
    say!("  data dir: {}", settings.data_dir.display());
    match settings.store {
        StoreKind::Sqlite => say!(
            "  store:    sqlite {}{}",
            settings.store_path.display(),
            if settings.store_exclusive {
                " (exclusive, cached)"
            } else {
                " (shared)"
            }
        ),
        StoreKind::Memory => say!("  store:    memory (sessions are lost at exit)"),
        StoreKind::Redis => {
            if let Some(r) = &settings.store_redis {
                say!(
                    "  store:    redis {} (keys {}*)",
                    crate::config::redact_url(r.url.expose()),
                    r.key_prefix
                );
                if let Some((path, _)) = &r.tls_ca {
                    say!("  store:    TLS, trusting the CA in {}", path.display());
                }
                if let Some(i) = &r.tls_identity {
                    say!(
                        "  store:    TLS client certificate {}",
                        i.cert_path.display()
                    );
                }
                if let Some((replicas, timeout)) = r.replica_acks {
                    say!(
                        "  store:    every write waits for {replicas} replica(s), at most {timeout:?}"
                    );
                }
            }
        }
        StoreKind::Postgres => say!(
            "  store:    postgres {}",
            settings
                .store_postgres
                .as_ref()
                .map_or_else(String::new, |pg| crate::config::redact_url(pg.url.expose()))
        ),
    }
    match keys {
        ApiKeySource::Config(n) => say!("  API keys: {n} from the configuration"),
        ApiKeySource::File(p) => say!("  API key:  kept in {}", p.display()),
        ApiKeySource::Generated(p, k) => {
            say!(
                "  API key:  {} (generated now, kept in {})",
                k.expose(),
                p.display()
            );
        }
    }
    match &settings.alerts.notifier {
        AlertNotifier::None => say!("  alerts:   off (new devices are not watched)"),
        AlertNotifier::Outbox(p) => say!("  alerts:   new-device alerts to {}", p.display()),
        AlertNotifier::Smtp(c) => say!(
            "  alerts:   new-device alerts by e-mail via {}:{}",
            c.host,
            c.port
        ),
        AlertNotifier::Webhook { .. } => say!("  alerts:   new-device alerts to the webhook"),
    }
    say!("  API:      {url}/v1/openapi.json  (send Authorization: Bearer <API key>)");
    say!("  JWKS:     {url}/.well-known/jwks.json  (access tokens from POST /v1/tokens)");
}
