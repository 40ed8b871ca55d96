//! Configuration of `sessionary serve`: defaults < TOML file < `SESSIONARY_*`
//! environment variables < command-line flags.
//!
//! Nested keys are joined with `__` in environment variables, e.g.
//! `SESSIONARY_POLICY__DEFAULT__IDLE_TIMEOUT=15m` sets `policy.default.idle_timeout`.
//! Every key, its default and its variable are listed in `docs/config.md`.
//!
//! Loading is two steps: [`load`] merges the sources into a [`Config`] (raw,
//! serializable, what `sessionary config-check` prints), and
//! [`Config::validate`] checks every value and yields [`Settings`]. Each
//! failure is a [`ConfigError`] naming the key, what is allowed and where the
//! value came from.
//!
//! # Examples
//!
//! ```
//! use sessionary_server::config::{Overrides, load};
//! // Defaults < no file < SESSIONARY_* variables < flags.
//! let config = load(None, &Overrides { listen: Some("127.0.0.1:0".into()), data_dir: None })?;
//! let settings = config.validate()?;
//! assert_eq!(settings.listen.port(), 0);
//! # let settings = sessionary_server::config::Config::default().validate()?;
//! assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
//! # Ok::<(), sessionary_server::config::ConfigErrors>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use sessionary_core::policy::parse_duration;
use sessionary_core::{KeyRing, Policy};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "SESSIONARY_";

/// The service's default policy: the core's ([`Policy::default`]), plus 5
/// `downloads` per session for anonymous and signed-in sessions without a
/// role policy of their own (the demo's downloads page charges that unit).
pub fn default_policy() -> Policy {
    let mut p = Policy::default();
    let five = sessionary_core::QuotaLimit::per_session(5);
    p.default.quotas.units.insert("downloads".to_owned(), five);
    p.anonymous
        .quotas
        .units
        .insert("downloads".to_owned(), five);
    p
}

/// Shortest API key accepted from configuration, in characters.
pub const MIN_API_KEY_LEN: usize = 32;

/// Where sessions are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// SQLite in a file (durable; the default).
    #[default]
    Sqlite,
    /// In this process only: everything is lost at exit (tests, demos).
    Memory,
    /// PostgreSQL (durable, shared by several nodes): `store.url`.
    Postgres,
    /// A Redis server (`url`), shared by several instances of the service.
    Redis,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Memory => "memory",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        })
    }
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite`, `memory`, `postgres` or `redis`.
    pub kind: StoreKind,
    /// The SQLite file; default `<data_dir>/sessions.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// This process owns the SQLite file (locked exclusively) and serves session
    /// reads from memory; `false` lets other processes open the file (slower).
    pub exclusive: bool,
    /// The server of a shared store (`kind = "postgres"` or `"redis"`; required
    /// there): `postgres://sessionary:PASSWORD@db.internal:5432/sessionary` or
    /// `redis://[user:password@]host[:port][/db]`, for a Redis Cluster
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (seed
    /// nodes), or through Redis Sentinel
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`;
    /// over TLS `rediss://`, `rediss+cluster://`, `rediss+sentinel://`.
    /// Its password is never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// A PEM file of the CA certificate(s) that signed the Redis servers'
    /// certificates (for a TLS `url`, `rediss...://`), trusted instead of the
    /// webpki roots; read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// A PEM file of this client's certificate (chain), shown to Redis
    /// servers that ask for one (`tls-auth-clients yes`); with `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// A PEM file of the private key of `tls_cert`; read at start, never
    /// printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Prefix of every Redis key (for `kind = "redis"`); default `sessionary:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Opt-in durability (for `kind = "redis"`): every write waits until this
    /// many replicas acknowledged it (`WAIT`), else the API answers 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_acks: Option<u32>,
    /// How long a write waits for `replica_acks` (default `100ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_ack_timeout: Option<String>,
    /// Opt-in near cache (for the shared stores, `kind = "postgres"` or
    /// `"redis"`): live sessions are kept in this node's memory for at most
    /// this long (e.g. `"1s"`), invalidated through the store's fan-out, so
    /// most verifications skip the store. The bound is how late a revocation
    /// made on another node can be seen here if its invalidation is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_cache: Option<String>,
    /// Most connections to PostgreSQL this process opens (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// How long an operation waits for a PostgreSQL connection (default `5s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_timeout: Option<String>,
    /// PostgreSQL's `statement_timeout` on the store's connections (default
    /// `10s`; `0s` leaves the server's setting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::default(),
            path: None,
            exclusive: true,
            url: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            key_prefix: None,
            replica_acks: None,
            replica_ack_timeout: None,
            near_cache: None,
            max_connections: None,
            acquire_timeout: None,
            statement_timeout: None,
        }
    }
}

/// The validated Redis settings of `[store]`.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// The server URL (may hold a password).
    pub url: Secret,
    /// The key prefix.
    pub key_prefix: String,
    /// `replica_acks` and `replica_ack_timeout`, if set.
    pub replica_acks: Option<(u32, Duration)>,
    /// `tls_ca`: the file and the PEM read from it.
    pub tls_ca: Option<(PathBuf, Vec<u8>)>,
    /// `tls_cert` and `tls_key`, read.
    pub tls_identity: Option<TlsIdentity>,
}

/// A client certificate for Redis (`[store] tls_cert`, `tls_key`), read at
/// start; `Debug` shows the files, never the key.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// The certificate (chain), PEM.
    pub cert: Vec<u8>,
    /// The private key, PEM.
    pub key: Secret,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM file for `key`, refused (with the key's name) when missing or
/// when `valid` (the Redis store's own check, so a file passes here exactly
/// when the store would take it) says it holds no `what`; the message never
/// holds the contents.
fn read_pem(
    key: &str,
    path: &Path,
    what: &str,
    valid: fn(&[u8]) -> bool,
    errs: &mut Vec<ConfigError>,
) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(pem) if valid(&pem) => Some(pem),
        Ok(_) => {
            errs.push(ConfigError::new(
                key,
                format!("{} holds no valid PEM {what}", path.display()),
            ));
            None
        }
        Err(e) => {
            errs.push(ConfigError::new(
                key,
                format!("cannot read {}: {e}", path.display()),
            ));
            None
        }
    }
}

/// The validated PostgreSQL store (`[store] kind = "postgres"`).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    /// The URL; `Debug` prints `REDACTED`, [`redact_url`] shows it without the password.
    pub url: Secret,
    /// Pool size and timeouts.
    pub options: sessionary_sql::PostgresOptions,
}

impl StoreConfig {
    /// Checks `url`, `key_prefix`, `replica_acks`, `replica_ack_timeout` and
    /// `tls_ca` for `kind = "redis"`: required (`url`) and valid there; the
    /// others refused for the other kinds (`url` is checked by
    /// [`Self::validate_postgres`] then).
    fn validate_redis(&self, errs: &mut Vec<ConfigError>) -> Option<RedisSettings> {
        if self.kind != StoreKind::Redis {
            for (key, set) in [
                ("store.key_prefix", self.key_prefix.is_some()),
                ("store.replica_acks", self.replica_acks.is_some()),
                (
                    "store.replica_ack_timeout",
                    self.replica_ack_timeout.is_some(),
                ),
                ("store.tls_ca", self.tls_ca.is_some()),
                ("store.tls_cert", self.tls_cert.is_some()),
                ("store.tls_key", self.tls_key.is_some()),
            ] {
                if set {
                    errs.push(ConfigError::new(
                        key,
                        format!(
                            "only used with kind = \"redis\", not {:?}",
                            self.kind.to_string()
                        ),
                    ));
                }
            }
            return None;
        }
        let before = errs.len();
        let replica_acks = match (self.replica_acks, &self.replica_ack_timeout) {
            (None, None) => None,
            (None, Some(_)) => {
                errs.push(ConfigError::new(
                    "store.replica_ack_timeout",
                    "only used with store.replica_acks",
                ));
                None
            }
            (Some(n), t) => {
                if !(1..=16).contains(&n) {
                    errs.push(ConfigError::new(
                        "store.replica_acks",
                        format!("must be between 1 and 16, got {n}"),
                    ));
                }
                let timeout = match t {
                    None => Some(Duration::from_millis(100)),
                    Some(t) => bounded_duration(
                        "store.replica_ack_timeout",
                        t,
                        Duration::from_millis(10),
                        Duration::from_secs(1),
                        errs,
                    ),
                };
                timeout.map(|d| (n, d))
            }
        };
        let acks_ok = errs.len() == before;
        if self.path.is_some() {
            errs.push(ConfigError::new(
                "store.path",
                "only used with store.kind = \"sqlite\"; Redis is reached by store.url",
            ));
        }
        let url = match &self.url {
            None => {
                errs.push(ConfigError::new(
                    "store.url",
                    "required with kind = \"redis\": e.g. \"redis://127.0.0.1:6379\" or \"redis://:PASSWORD@host:6379/0\"",
                ));
                None
            }
            // Read as the store reads it, so a URL refused at start is refused here.
            Some(u) if sessionary_redis::RedisOptions::check_url(u.expose()).is_err() => {
                errs.push(ConfigError::new(
                    "store.url",
                    format!(
                        "expected redis://[user:password@]host[:port][/db], redis+cluster://[user:password@]host:port[,host:port...] or redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db] (over TLS rediss://, rediss+cluster://, rediss+sentinel://), got {:?}",
                        redact_url(u.expose())
                    ),
                ));
                None
            }
            Some(u)
                if (u.expose().starts_with("redis+cluster://")
                    || u.expose().starts_with("rediss+cluster://"))
                    && replica_acks.is_some() =>
            {
                errs.push(ConfigError::new(
                    "store.replica_acks",
                    "not supported with a redis+cluster:// url yet",
                ));
                None
            }
            Some(u) => Some(u.clone()),
        };
        let before = errs.len();
        let plain = url
            .as_ref()
            .is_some_and(|u| !sessionary_redis::RedisOptions::is_tls_url(u.expose()));
        for (key, set) in [
            ("store.tls_ca", self.tls_ca.is_some()),
            ("store.tls_cert", self.tls_cert.is_some()),
            ("store.tls_key", self.tls_key.is_some()),
        ] {
            if set && plain {
                errs.push(ConfigError::new(
                    key,
                    "only used with a TLS store.url (rediss://, rediss+cluster:// or rediss+sentinel://)",
                ));
            }
        }
        let tls_ca = match &self.tls_ca {
            Some(path) if !plain => read_pem(
                "store.tls_ca",
                path,
                "certificate",
                sessionary_redis::RedisOptions::is_certificate_pem,
                errs,
            )
            .map(|pem| (path.clone(), pem)),
            _ => None,
        };
        let tls_identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert_path), Some(key_path)) if !plain => {
                let cert = read_pem(
                    "store.tls_cert",
                    cert_path,
                    "certificate",
                    sessionary_redis::RedisOptions::is_certificate_pem,
                    errs,
                );
                let key = read_pem(
                    "store.tls_key",
                    key_path,
                    "private key",
                    sessionary_redis::RedisOptions::is_private_key_pem,
                    errs,
                )
                .map(|k| Secret::new(String::from_utf8_lossy(&k).into_owned()));
                cert.zip(key).map(|(cert, key)| TlsIdentity {
                    cert_path: cert_path.clone(),
                    key_path: key_path.clone(),
                    cert,
                    key,
                })
            }
            (Some(_), None) => {
                errs.push(ConfigError::new(
                    "store.tls_key",
                    "required with store.tls_cert",
                ));
                None
            }
            (None, Some(_)) => {
                errs.push(ConfigError::new(
                    "store.tls_cert",
                    "required with store.tls_key",
                ));
                None
            }
            _ => None,
        };
        let tls_ok = errs.len() == before;
        let prefix = self.key_prefix.clone().unwrap_or_else(|| {
            sessionary_redis::RedisOptions::new()
                .key_prefix()
                .to_owned()
        });
        let prefix_ok = match sessionary_redis::RedisOptions::check_key_prefix(&prefix) {
            Ok(()) => true,
            Err(e) => {
                errs.push(ConfigError::new("store.key_prefix", e.to_string()));
                false
            }
        };
        match url {
            Some(url) if prefix_ok && acks_ok && tls_ok => Some(RedisSettings {
                url,
                key_prefix: prefix,
                replica_acks,
                tls_ca,
                tls_identity,
            }),
            _ => None,
        }
    }

    /// Checks `near_cache`: a duration from 10 ms to 60 s, for the shared
    /// stores only (`"0s"` turns it off).
    fn validate_near_cache(&self, errs: &mut Vec<ConfigError>) -> Option<Duration> {
        let value = self.near_cache.as_deref()?;
        if !matches!(self.kind, StoreKind::Postgres | StoreKind::Redis) {
            errs.push(ConfigError::new(
                "store.near_cache",
                format!(
                    "only used with the shared stores (kind = \"postgres\" or \"redis\"), not {:?}: the embedded stores answer from memory already",
                    self.kind.to_string()
                ),
            ));
            return None;
        }
        if parse_duration(value).is_ok_and(|d| d.is_zero()) {
            return None;
        }
        bounded_duration(
            "store.near_cache",
            value,
            Duration::from_millis(10),
            Duration::from_secs(60),
            errs,
        )
    }

    /// Checks the PostgreSQL keys: required and well-formed with `kind =
    /// "postgres"`, absent otherwise (a `url` that would be ignored is a
    /// mistake worth saying). `None` unless the kind is `postgres` and every
    /// key is valid.
    fn validate_postgres(&self, errs: &mut Vec<ConfigError>) -> Option<PostgresStore> {
        if self.kind != StoreKind::Postgres {
            let set = [
                (
                    "store.url",
                    self.url.is_some() && self.kind != StoreKind::Redis,
                ),
                ("store.max_connections", self.max_connections.is_some()),
                ("store.acquire_timeout", self.acquire_timeout.is_some()),
                ("store.statement_timeout", self.statement_timeout.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, is_set)| *is_set) {
                errs.push(ConfigError::new(
                    *key,
                    format!(
                        "only used with store.kind = \"postgres\" (the kind is \"{}\")",
                        self.kind
                    ),
                ));
            }
            return None;
        }
        let before = errs.len();
        if self.path.is_some() {
            errs.push(ConfigError::new(
                "store.path",
                "only used with store.kind = \"sqlite\"; PostgreSQL is reached by store.url",
            ));
        }
        let url = match self.url.as_ref().map(|u| u.expose().trim()) {
            None | Some("") => {
                errs.push(ConfigError::new(
                    "store.url",
                    "required with store.kind = \"postgres\": a URL such as \
                     postgres://user:password@host:5432/database (or SESSIONARY_STORE__URL)",
                ));
                None
            }
            Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                errs.push(ConfigError::new(
                    "store.url",
                    format!(
                        "expected a postgres:// or postgresql:// URL, got {:?}",
                        redact_url(u)
                    ),
                ));
                None
            }
            Some(u) => Some(Secret::new(u)),
        };
        let mut options = sessionary_sql::PostgresOptions::new();
        if let Some(n) = self.max_connections {
            if (1..=1000).contains(&n) {
                options = options.with_max_connections(n);
            } else {
                errs.push(ConfigError::new(
                    "store.max_connections",
                    format!("must be between 1 and 1000, got {n}"),
                ));
            }
        }
        if let Some(t) = &self.acquire_timeout {
            if let Some(d) = bounded_duration(
                "store.acquire_timeout",
                t,
                Duration::from_millis(100),
                Duration::from_secs(300),
                errs,
            ) {
                options = options.with_acquire_timeout(d);
            }
        }
        if let Some(t) = &self.statement_timeout {
            match parse_duration(t) {
                Ok(d) if d.is_zero() => options = options.with_statement_timeout(None),
                Ok(_) => {
                    if let Some(d) = bounded_duration(
                        "store.statement_timeout",
                        t,
                        Duration::from_millis(100),
                        Duration::from_secs(3600),
                        errs,
                    ) {
                        options = options.with_statement_timeout(Some(d));
                    }
                }
                Err(e) => errs.push(ConfigError::new("store.statement_timeout", e)),
            }
        }
        match url {
            Some(url) if errs.len() == before => Some(PostgresStore { url, options }),
            _ => None,
        }
    }
}

/// `url` with its password (in the user info, or a `password=` parameter)
/// replaced by `REDACTED`, for messages and `config-check`. Something that is
/// not a URL at all is replaced as a whole.
///
/// # Examples
///
/// ```
/// use sessionary_server::config::redact_url;
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/sessions?sslmode=disable"),
///     "postgres://app:REDACTED@db:5432/sessions?sslmode=disable"
/// );
/// assert_eq!(redact_url("postgres://db/s?password=s3cret"), "postgres://db/s?password=REDACTED");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "REDACTED".to_owned();
    };
    // `user:password` ends at the last `@`, wherever it is, so a password
    // with a raw `/`, `?` or `#` (malformed, but quoted in error messages) is
    // hidden as well (a path or query with an `@` may be hidden with it).
    // Without a `:` before that `@`, the authority ends at the first `/`.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(i) if rest[..i].contains(':') || !rest[..i].contains(['/', '?', '#']) => {
            (Some(&rest[..i]), &rest[i + 1..])
        }
        _ => match rest.find(['/', '?', '#']).map(|end| rest[..end].rfind('@')) {
            Some(Some(i)) => (Some(&rest[..i]), &rest[i + 1..]),
            _ => (None, rest),
        },
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    let authority = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:REDACTED@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => host.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=REDACTED"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A secret string from configuration; `Debug` prints `REDACTED`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// `[api]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Accepted API keys (`Authorization: Bearer <key>`). Empty: one is generated on
    /// first start and kept in `<data_dir>/api-key`.
    #[serde(deserialize_with = "one_or_many")]
    pub keys: Vec<Secret>,
}

/// `[demo]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serve the demo shop at `/` (accounts `alice` and `admin` are created on
    /// first start and kept in `<data_dir>/demo-users`).
    pub enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[tokens]`: access tokens (JWT) and refresh tokens for API clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// The `iss` claim of access tokens.
    pub issuer: String,
    /// The `aud` claim of access tokens.
    pub audience: String,
    /// Signing algorithm of new keys: `EdDSA` (Ed25519, default), `ES256` or
    /// `HS256` (a random 256-bit secret; its tokens can only be verified here).
    /// Keys live in `<data_dir>/token-keys`.
    pub algorithm: String,
    /// Access token lifetime, 5 to 15 minutes (`10m`).
    pub access_ttl: String,
    /// How long a retried refresh of the same token gets the same successor (`10s`, at most 60 s).
    pub refresh_grace: String,
    /// Access token lifetime per role (`admin = "5m"`), 5 to 15 minutes; a
    /// session with several roles gets the shortest.
    pub role_ttl: std::collections::BTreeMap<String, String>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: "sessionary".into(),
            audience: "sessionary-api".into(),
            algorithm: "EdDSA".into(),
            access_ttl: "10m".into(),
            refresh_grace: "10s".into(),
            role_ttl: std::collections::BTreeMap::new(),
        }
    }
}

/// `[audit]`: the audit log (sign-ins, ends, step-ups, binding mismatches,
/// refresh token reuse, failed verifications), kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long entries are kept (`90d`; at least `1h`). The sweeper forgets
    /// older ones.
    pub retention: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: "90d".into(),
        }
    }
}

/// Which notifier delivers new-device alerts (`[alerts] notifier`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// One JSON line per alert in a file (`alerts.outbox`); the demo shows it at `/outbox`.
    #[default]
    Outbox,
    /// E-mail through an SMTP relay (`[alerts.smtp]`).
    Smtp,
    /// A signed JSON POST (`[alerts.webhook]`).
    Webhook,
    /// No new-device alerts (and no known devices recorded).
    None,
}

/// `[alerts.smtp]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSmtpConfig {
    /// The relay's host name.
    pub host: String,
    /// The relay's port (587).
    pub port: u16,
    /// `starttls` (default), `tls` (port 465) or `none` (plain text: a local relay only).
    pub tls: sessionary_notify::SmtpTls,
    /// User name for `AUTH`, if the relay wants one (with `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `AUTH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The sender, such as `Sessionary <security@example.com>`.
    pub from: String,
    /// The recipient; `{user}` is replaced by the user id (`{user}@example.com`).
    pub to: String,
    /// Time allowed for one delivery (`10s`).
    pub timeout: String,
}

impl Default for AlertsSmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: sessionary_notify::SmtpTls::default(),
            username: None,
            password: None,
            from: String::new(),
            to: "{user}@example.com".into(),
            timeout: "10s".into(),
        }
    }
}

/// Shortest audit retention accepted.
pub const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(3600);

impl AuditConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> Option<Duration> {
        match parse_duration(&self.retention) {
            Ok(d) if d >= MIN_AUDIT_RETENTION => Some(d),
            Ok(_) => {
                errs.push(ConfigError::new("audit.retention", "must be at least 1h"));
                None
            }
            Err(e) => {
                errs.push(ConfigError::new("audit.retention", e));
                None
            }
        }
    }
}

/// `[alerts.webhook]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsWebhookConfig {
    /// Where alerts are POSTed (`https://...`).
    pub url: String,
    /// The HMAC-SHA256 key of the `Sessionary-Signature` header (at least 32 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Time allowed for one request (`5s`).
    pub timeout: String,
}

impl Default for AlertsWebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: None,
            timeout: "5s".into(),
        }
    }
}

/// `[alerts]`: new-device alerts (`sessionary-notify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `outbox` (default), `smtp`, `webhook` or `none`.
    pub notifier: NotifierKind,
    /// The outbox file; default `<data_dir>/outbox.jsonl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<PathBuf>,
    /// Most alerts per user per hour (3); further new devices are recorded silently.
    pub max_per_hour: u32,
    /// SMTP settings (for `notifier = "smtp"`).
    pub smtp: AlertsSmtpConfig,
    /// Webhook settings (for `notifier = "webhook"`).
    pub webhook: AlertsWebhookConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            notifier: NotifierKind::default(),
            outbox: None,
            max_per_hour: 3,
            smtp: AlertsSmtpConfig::default(),
            webhook: AlertsWebhookConfig::default(),
        }
    }
}

/// Shortest webhook secret accepted, in characters.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 32;

/// How new-device alerts are delivered (validated `[alerts]`).
#[derive(Clone, Debug)]
pub enum AlertNotifier {
    /// No alerts.
    None,
    /// To this file.
    Outbox(PathBuf),
    /// By e-mail.
    Smtp(sessionary_notify::SmtpConfig),
    /// To a webhook.
    Webhook {
        /// The URL.
        url: String,
        /// The signing key.
        secret: Secret,
        /// Request timeout.
        timeout: Duration,
    },
}

/// The validated `[alerts]` section.
#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// The notifier.
    pub notifier: AlertNotifier,
    /// Most alerts per user per hour.
    pub max_per_hour: usize,
}

/// A duration between `min` and `max`, or an error naming `key`.
fn bounded_duration(
    key: &str,
    value: &str,
    min: Duration,
    max: Duration,
    errs: &mut Vec<ConfigError>,
) -> Option<Duration> {
    match parse_duration(value) {
        Ok(d) if (min..=max).contains(&d) => Some(d),
        Ok(_) => {
            errs.push(ConfigError::new(
                key,
                format!(
                    "must be between {} and {}",
                    sessionary_core::policy::format_duration(min),
                    sessionary_core::policy::format_duration(max)
                ),
            ));
            None
        }
        Err(e) => {
            errs.push(ConfigError::new(key, e));
            None
        }
    }
}

impl AlertsConfig {
    fn validate(&self, data_dir: &Path, errs: &mut Vec<ConfigError>) -> Option<AlertSettings> {
        let before = errs.len();
        if !(1..=100).contains(&self.max_per_hour) {
            errs.push(ConfigError::new(
                "alerts.max_per_hour",
                format!(
                    "expected 1 to 100 alerts per user and hour, got {} (use notifier = \"none\" for no alerts)",
                    self.max_per_hour
                ),
            ));
        }
        if self
            .outbox
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errs.push(ConfigError::new(
                "alerts.outbox",
                "expected a file path, got an empty string",
            ));
        }
        let notifier = match self.notifier {
            NotifierKind::None => Some(AlertNotifier::None),
            NotifierKind::Outbox => Some(AlertNotifier::Outbox(
                self.outbox
                    .clone()
                    .unwrap_or_else(|| data_dir.join("outbox.jsonl")),
            )),
            NotifierKind::Smtp => self.smtp.validate(errs).map(AlertNotifier::Smtp),
            NotifierKind::Webhook => self.webhook.validate(errs),
        };
        match notifier {
            Some(notifier) if errs.len() == before => Some(AlertSettings {
                notifier,
                max_per_hour: usize::try_from(self.max_per_hour).unwrap_or(usize::MAX),
            }),
            _ => None,
        }
    }
}

impl AlertsSmtpConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> Option<sessionary_notify::SmtpConfig> {
        let before = errs.len();
        if self.host.trim().is_empty()
            || self
                .host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            errs.push(ConfigError::new(
                "alerts.smtp.host",
                "expected the SMTP relay's host name, such as \"smtp.example.com\" (required with notifier = \"smtp\")",
            ));
        }
        if self.port == 0 {
            errs.push(ConfigError::new(
                "alerts.smtp.port",
                "expected a port from 1 to 65535 (587 for STARTTLS, 465 for TLS)",
            ));
        }
        let timeout = bounded_duration(
            "alerts.smtp.timeout",
            &self.timeout,
            Duration::from_secs(1),
            Duration::from_secs(300),
            errs,
        );
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.expose().to_owned())),
            (None, None) => None,
            _ => {
                errs.push(ConfigError::new(
                    "alerts.smtp.username",
                    "expected both a username and a password, or neither",
                ));
                None
            }
        };
        if credentials.is_some() && self.tls == sessionary_notify::SmtpTls::None {
            errs.push(ConfigError::new(
                "alerts.smtp.tls",
                "\"none\" would send the password in clear; use \"starttls\" or \"tls\" with credentials",
            ));
        }
        let mut config = sessionary_notify::SmtpConfig::new(self.host.trim(), &self.from, &self.to)
            .with_port(self.port)
            .with_tls(self.tls);
        if let Some((u, p)) = credentials {
            config = config.with_credentials(u, p);
        }
        if let Some(t) = timeout {
            config = config.with_timeout(t);
        }
        if let Err(e) = sessionary_notify::smtp::check_mailbox(&self.from) {
            errs.push(ConfigError::new(
                "alerts.smtp.from",
                format!("{e}; expected an address such as \"Sessionary <security@example.com>\""),
            ));
        } else if let Err(e) = config.validate() {
            errs.push(ConfigError::new(
                "alerts.smtp.to",
                format!("{e}; expected an address where {{user}} stands for the user id, such as \"{{user}}@example.com\""),
            ));
        }
        (errs.len() == before).then_some(config)
    }
}

impl AlertsWebhookConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> Option<AlertNotifier> {
        let before = errs.len();
        if let Err(e) = sessionary_notify::webhook::check_url(&self.url) {
            errs.push(ConfigError::new(
                "alerts.webhook.url",
                format!("{e}: expected an http:// or https:// URL (required with notifier = \"webhook\")"),
            ));
        }
        let secret = match &self.secret {
            Some(s) if s.expose().len() >= MIN_WEBHOOK_SECRET_LEN => Some(s.clone()),
            _ => {
                errs.push(ConfigError::new(
                    "alerts.webhook.secret",
                    format!(
                        "expected at least {MIN_WEBHOOK_SECRET_LEN} characters (the HMAC key the receiver checks the Sessionary-Signature header with)"
                    ),
                ));
                None
            }
        };
        let timeout = bounded_duration(
            "alerts.webhook.timeout",
            &self.timeout,
            Duration::from_millis(100),
            Duration::from_secs(60),
            errs,
        );
        match (secret, timeout) {
            (Some(secret), Some(timeout)) if errs.len() == before => Some(AlertNotifier::Webhook {
                url: self.url.clone(),
                secret,
                timeout,
            }),
            _ => None,
        }
    }
}

/// How log lines are written (`[log] format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`,
    /// `span`, `spans`), for log collectors.
    Json,
}

/// `log`: either a filter string (`log = "info"`) or a table
/// (`[log] filter = "info"`, `format = "json"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogConfig {
    /// Just the filter (`tracing` env-filter syntax); text format.
    Filter(String),
    /// Filter and format.
    Table(LogTable),
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogTable {
    /// `tracing` env-filter syntax, e.g. `info` or `info,sessionary=debug`.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogTable {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    /// The filter.
    pub fn filter(&self) -> &str {
        match self {
            Self::Filter(f) => f,
            Self::Table(t) => &t.filter,
        }
    }

    /// The format.
    pub fn format(&self) -> LogFormat {
        match self {
            Self::Filter(_) => LogFormat::Text,
            Self::Table(t) => t.format,
        }
    }
}

impl From<&str> for LogConfig {
    fn from(filter: &str) -> Self {
        Self::Filter(filter.to_owned())
    }
}

/// `[metrics]`: the Prometheus endpoint `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// A separate address for `/metrics` only (e.g. `127.0.0.1:9464`); unset:
    /// on the main listener. A non-loopback address needs `token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bearer token a scraper sends (`Authorization: Bearer <token>`, at least
    /// 32 characters). Unset: on the main listener an API key is required; on
    /// a separate loopback listener nothing is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            token: None,
        }
    }
}

/// The validated `[metrics]` section.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// A separate listener for `/metrics`.
    pub listen: Option<SocketAddr>,
    /// The scraper's bearer token.
    pub token: Option<Secret>,
}

impl MetricsConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> MetricsSettings {
        let listen = self.listen.as_deref().and_then(|l| {
            l.trim()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    errs.push(ConfigError::new(
                        "metrics.listen",
                        format!("expected an address and port such as 127.0.0.1:9464, got {l:?}"),
                    ));
                })
                .ok()
        });
        if let Some(t) = &self.token {
            if t.expose().len() < MIN_API_KEY_LEN {
                errs.push(ConfigError::new(
                    "metrics.token",
                    format!("must be at least {MIN_API_KEY_LEN} characters"),
                ));
            }
        }
        if let Some(addr) = listen {
            if self.enabled && !addr.ip().is_loopback() && self.token.is_none() {
                errs.push(ConfigError::new(
                    "metrics.listen",
                    "a non-loopback address would expose /metrics to anyone who reaches it; \
                     set metrics.token too",
                ));
            }
        }
        MetricsSettings {
            enabled: self.enabled,
            listen,
            token: self.token.clone(),
        }
    }
}

/// The merged configuration, before validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    pub listen: String,
    /// Folder for the SQLite file and generated keys.
    pub data_dir: PathBuf,
    /// The session store.
    pub store: StoreConfig,
    /// The service API.
    pub api: ApiConfig,
    /// Data keys as `ID:BASE64` (32 bytes), the first seals; the others only open
    /// older data. Empty: one is generated and kept in `<data_dir>/data-keys`.
    #[serde(deserialize_with = "one_or_many")]
    pub data_keys: Vec<Secret>,
    /// Timeouts and limits (see `sessionary_core::Policy`).
    pub policy: Policy,
    /// How often expired sessions are swept (`60s`).
    pub sweep_interval: String,
    /// Log filter (`tracing` env-filter syntax, e.g. `info` or `info,sessionary=debug`),
    /// or a `[log]` table with `filter` and `format` (`text` or `json`).
    pub log: LogConfig,
    /// The demo shop.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Access and refresh tokens.
    #[serde(default)]
    pub tokens: TokensConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Reverse proxies (addresses or CIDR networks) whose `Forwarded` /
    /// `X-Forwarded-For` headers give the client IP; from any other peer those
    /// headers are ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// New-device alerts.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The OpenID Connect provider (single sign-on), served with the demo.
    #[serde(default)]
    pub oidc: OidcConfig,
}

/// `[oidc]`: Sessionary as an OpenID Connect provider for the apps in
/// `[[oidc.clients]]` (single sign-on through the demo's session).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The issuer URL (`iss`, discovery), without a trailing slash; unset:
    /// `http://<listen address>`.
    pub issuer: Option<String>,
    /// The registered clients (relying parties).
    pub clients: Vec<OidcClientConfig>,
}

/// One `[[oidc.clients]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcClientConfig {
    /// `client_id`: 1-64 characters of `A-Z a-z 0-9 - _ .`.
    pub id: String,
    /// A human name shown in "Manage sessions" (default: the id).
    pub name: Option<String>,
    /// The client secret (at least 8 characters); omitted: a public client
    /// (`token_endpoint_auth_method` `none`, PKCE alone).
    pub secret: Option<Secret>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    /// ID token algorithm: `EdDSA` (default), `ES256` or `RS256`.
    pub id_token_alg: Option<String>,
}

impl OidcConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> Option<crate::oidc::OidcSettings> {
        let before = errs.len();
        let issuer = match &self.issuer {
            Some(i) => {
                let ok = url::Url::parse(i).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.query().is_none()
                        && u.fragment().is_none()
                        && !i.ends_with('/')
                });
                if !ok {
                    errs.push(ConfigError::new(
                        "oidc.issuer",
                        "expected an http(s) URL without query, fragment or trailing slash, such as \"https://sso.example.com\"",
                    ));
                }
                Some(i.clone())
            }
            None => None,
        };
        let mut clients = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = |k: &str| format!("oidc.clients[{i}].{k}");
            if c.id.is_empty()
                || c.id.len() > 64
                || !c
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                errs.push(ConfigError::new(
                    key("id"),
                    "expected 1-64 characters of A-Z a-z 0-9 - _ .",
                ));
            } else if self.clients[..i].iter().any(|o| o.id == c.id) {
                errs.push(ConfigError::new(key("id"), "appears twice"));
            }
            if c.secret.as_ref().is_some_and(|s| s.expose().len() < 8) {
                errs.push(ConfigError::new(
                    key("secret"),
                    "expected at least 8 characters (omit it for a public client)",
                ));
            }
            let absolute = |u: &str| {
                url::Url::parse(u)
                    .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.fragment().is_none())
            };
            if c.redirect_uris.is_empty() {
                errs.push(ConfigError::new(
                    key("redirect_uris"),
                    "expected at least one absolute http(s) URL",
                ));
            }
            for (name, list) in [
                ("redirect_uris", &c.redirect_uris),
                ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
            ] {
                for u in list {
                    if !absolute(u) {
                        errs.push(ConfigError::new(
                            key(name),
                            format!("{u:?} is not an absolute http(s) URL without fragment"),
                        ));
                    }
                }
            }
            if let Some(u) = &c.backchannel_logout_uri {
                if !absolute(u) {
                    errs.push(ConfigError::new(
                        key("backchannel_logout_uri"),
                        format!("{u:?} is not an absolute http(s) URL without fragment"),
                    ));
                }
            }
            let named = c.id_token_alg.as_deref().unwrap_or("EdDSA");
            // HS256 would sign ID tokens with a secret no client holds.
            let alg = match sessionary_token::SigningAlg::parse(named)
                .filter(|a| *a != sessionary_token::SigningAlg::Hs256)
            {
                Some(alg) => alg,
                None => {
                    errs.push(ConfigError::new(
                        key("id_token_alg"),
                        format!("expected EdDSA, ES256 or RS256, got {named:?}"),
                    ));
                    sessionary_token::SigningAlg::EdDsa
                }
            };
            clients.push(crate::oidc::Client {
                id: c.id.clone(),
                name: c.name.clone().unwrap_or_else(|| c.id.clone()),
                secret: c.secret.as_ref().map(|s| s.expose().to_owned()),
                redirect_uris: c.redirect_uris.clone(),
                post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                backchannel_logout_uri: c.backchannel_logout_uri.clone(),
                id_token_alg: alg,
            });
        }
        (errs.len() == before).then_some(crate::oidc::OidcSettings { issuer, clients })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./sessionary-data"),
            store: StoreConfig::default(),
            api: ApiConfig::default(),
            data_keys: Vec::new(),
            policy: default_policy(),
            sweep_interval: "60s".into(),
            log: "info".into(),
            demo: DemoConfig::default(),
            tokens: TokensConfig::default(),
            audit: AuditConfig::default(),
            trusted_proxies: Vec::new(),
            alerts: AlertsConfig::default(),
            oidc: OidcConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// Values from command-line flags; they win over every other source.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// One bad configuration value: the key, what is wrong or allowed, and its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `policy.default.idle_timeout`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// Where the value came from (a file, an environment variable), if known.
    pub origin: Option<String>,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            origin: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.message)?;
        if let Some(o) = &self.origin {
            write!(f, " (from {o})")?;
        }
        Ok(())
    }
}

/// Every bad value found (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Merges defaults, the TOML `file` (if any), `SESSIONARY_*` variables and `overrides`.
///
/// # Errors
///
/// A missing file, TOML syntax errors, unknown keys and values of the wrong type,
/// each naming the key and its origin.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    load_from(file, Env::prefixed(ENV_PREFIX), overrides)
}

fn load_from(file: Option<&Path>, env: Env, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(
                ConfigError::new("config", format!("no such file {}", path.display())).into(),
            );
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    // SESSIONARY_CONFIG names the file; it is not a key.
    fig = fig.merge(env.split("__").ignore(&["config"]));
    let mut config: Config = fig.extract().map_err(from_figment)?;
    if let Some(l) = &overrides.listen {
        config.listen.clone_from(l);
    }
    if let Some(d) = &overrides.data_dir {
        config.data_dir.clone_from(d);
    }
    Ok(config)
}

fn is_duration_key(key: &str) -> bool {
    key.ends_with("timeout")
        || key.ends_with("_ttl")
        || key.ends_with("interval")
        || key.ends_with("grace")
        || key.ends_with("retention")
}

fn from_figment(err: figment::Error) -> ConfigErrors {
    let mut out = Vec::new();
    for e in err {
        let mut path = e.path.clone();
        let message = match &e.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                // figment's path ends with the unknown field already.
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                if expected.is_empty() {
                    "unknown key".to_owned()
                } else {
                    format!("unknown key; expected one of: {}", expected.join(", "))
                }
            }
            figment::error::Kind::InvalidType(actual, _) if is_duration_key(&path.join(".")) => {
                format!(
                    "expected a duration such as 250ms, 30s, 10m, 2h, 7d or 1h30m, got {actual}"
                )
            }
            kind => kind.to_string(),
        };
        let origin = e.metadata.as_ref().map(|md| {
            if md.name.contains("environment") {
                let var: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
                format!("environment variable {ENV_PREFIX}{}", var.join("__"))
            } else if let Some(src) = &md.source {
                format!("{} {src}", md.name)
            } else {
                md.name.to_string()
            }
        });
        let key = if path.is_empty() {
            "(top level)".to_owned()
        } else {
            path.join(".")
        };
        out.push(ConfigError {
            key,
            message,
            origin,
        });
    }
    if out.is_empty() {
        out.push(ConfigError::new(
            "(unknown)",
            "the configuration could not be read",
        ));
    }
    ConfigErrors(out)
}

/// Accepts a single string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.trim().is_empty() => Vec::new(),
        OneOrMany::One(s) => s.split(',').map(|k| Secret(k.trim().to_owned())).collect(),
        OneOrMany::Many(v) => v.into_iter().map(Secret).collect(),
    })
}

/// The validated configuration that `serve` runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Folder for the SQLite file and generated keys.
    pub data_dir: PathBuf,
    /// Store kind.
    pub store: StoreKind,
    /// The SQLite file (for [`StoreKind::Sqlite`]).
    pub store_path: PathBuf,
    /// Whether this process owns the SQLite file and caches reads.
    pub store_exclusive: bool,
    /// The near cache's `max_age`, if on (only for the shared stores).
    pub store_near_cache: Option<Duration>,
    /// The PostgreSQL store (`Some` exactly for [`StoreKind::Postgres`]).
    pub store_postgres: Option<PostgresStore>,
    /// The Redis server (for [`StoreKind::Redis`]).
    pub store_redis: Option<RedisSettings>,
    /// Configured API keys (empty: use or generate `<data_dir>/api-key`).
    pub api_keys: Vec<Secret>,
    /// Configured data keys, current first (empty: use or generate `<data_dir>/data-keys`).
    pub data_keys: Vec<(u32, Secret)>,
    /// The policy (validated).
    pub policy: Policy,
    /// Sweep period.
    pub sweep_interval: Duration,
    /// Log filter.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// Whether the demo shop is served at `/`.
    pub demo: bool,
    /// Access and refresh tokens.
    pub tokens: TokenSettings,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: sessionary_axum::TrustedProxies,
    /// New-device alerts.
    pub alerts: AlertSettings,
    /// The OpenID Connect provider (`[oidc]`).
    pub oidc: crate::oidc::OidcSettings,
}

/// The validated `[tokens]` section.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Algorithm of generated keys.
    pub algorithm: sessionary_token::SigningAlg,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh grace window.
    pub refresh_grace: Duration,
    /// Access token lifetime per role.
    pub role_ttl: Vec<(String, Duration)>,
}

impl TokensConfig {
    fn validate(&self, errs: &mut Vec<ConfigError>) -> Option<TokenSettings> {
        let before = errs.len();
        for (key, v) in [
            ("tokens.issuer", &self.issuer),
            ("tokens.audience", &self.audience),
        ] {
            if v.trim().is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                errs.push(ConfigError::new(
                    key,
                    "expected 1 to 256 characters without control characters",
                ));
            }
        }
        // RS256 keys exist for OpenID Connect clients that need them, not for access tokens.
        let algorithm = sessionary_token::SigningAlg::parse(&self.algorithm)
            .filter(|a| *a != sessionary_token::SigningAlg::Rs256);
        if algorithm.is_none() {
            errs.push(ConfigError::new(
                "tokens.algorithm",
                format!(
                    "expected \"EdDSA\", \"ES256\" or \"HS256\", got {:?}",
                    self.algorithm
                ),
            ));
        }
        let access_ttl = match parse_duration(&self.access_ttl) {
            Ok(d) if (sessionary_token::MIN_TTL..=sessionary_token::MAX_TTL).contains(&d) => {
                Some(d)
            }
            Ok(_) => {
                errs.push(ConfigError::new(
                    "tokens.access_ttl",
                    "must be between 5m and 15m",
                ));
                None
            }
            Err(e) => {
                errs.push(ConfigError::new("tokens.access_ttl", e));
                None
            }
        };
        let refresh_grace = match parse_duration(&self.refresh_grace) {
            Ok(d) if d <= Duration::from_secs(60) => Some(d),
            Ok(_) => {
                errs.push(ConfigError::new(
                    "tokens.refresh_grace",
                    "must be at most 60s",
                ));
                None
            }
            Err(e) => {
                errs.push(ConfigError::new("tokens.refresh_grace", e));
                None
            }
        };
        let mut role_ttl = Vec::new();
        for (role, v) in &self.role_ttl {
            let key = format!("tokens.role_ttl.{role}");
            match parse_duration(v) {
                Ok(d) if (sessionary_token::MIN_TTL..=sessionary_token::MAX_TTL).contains(&d) => {
                    role_ttl.push((role.clone(), d));
                }
                Ok(_) => errs.push(ConfigError::new(key, "must be between 5m and 15m")),
                Err(e) => errs.push(ConfigError::new(key, e)),
            }
        }
        match (algorithm, access_ttl, refresh_grace) {
            (Some(algorithm), Some(access_ttl), Some(refresh_grace)) if errs.len() == before => {
                Some(TokenSettings {
                    issuer: self.issuer.clone(),
                    audience: self.audience.clone(),
                    algorithm,
                    access_ttl,
                    refresh_grace,
                    role_ttl,
                })
            }
            _ => None,
        }
    }
}

impl Config {
    /// Checks every value.
    ///
    /// # Errors
    ///
    /// Every bad value, each naming its key and what is allowed.
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        let mut errs = Vec::new();
        let listen = match self.listen.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(ConfigError::new(
                    "listen",
                    format!(
                        "expected an IP address and port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080, got {:?}",
                        self.listen
                    ),
                ));
                None
            }
        };
        if self.data_dir.as_os_str().is_empty() {
            errs.push(ConfigError::new(
                "data_dir",
                "expected a folder path, got an empty string",
            ));
        }
        let store_postgres = self.store.validate_postgres(&mut errs);
        let store_redis = self.store.validate_redis(&mut errs);
        let store_near_cache = self.store.validate_near_cache(&mut errs);
        if self
            .store
            .path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errs.push(ConfigError::new(
                "store.path",
                "expected a file path, got an empty string",
            ));
        }
        for (i, k) in self.api.keys.iter().enumerate() {
            let k = k.expose();
            if k.len() < MIN_API_KEY_LEN
                || k.len() > 512
                || !k.bytes().all(|b| b.is_ascii_graphic())
            {
                errs.push(ConfigError::new(
                    format!("api.keys[{i}]"),
                    format!(
                        "expected {MIN_API_KEY_LEN} to 512 printable ASCII characters without spaces \
                         (e.g. 43 base64url characters from 32 random bytes)"
                    ),
                ));
            }
        }
        let mut data_keys = Vec::new();
        for (i, k) in self.data_keys.iter().enumerate() {
            match KeyRing::parse_key(k.expose()) {
                Ok((id, _)) if data_keys.iter().any(|(seen, _)| *seen == id) => {
                    errs.push(ConfigError::new(
                        format!("data_keys[{i}]"),
                        format!("key id {id} appears twice; each key needs its own id"),
                    ));
                }
                Ok((id, _)) => data_keys.push((id, k.clone())),
                Err(e) => errs.push(ConfigError::new(
                    format!("data_keys[{i}]"),
                    format!("{e}; expected \"ID:BASE64\" with a numeric id and 32 bytes of standard or URL-safe base64"),
                )),
            }
        }
        if let Err(e) = self.policy.validate() {
            let (key, msg) = match e.split_once(": ") {
                // A nested field (`quotas.units.downloads.limit: ...`) joins the key.
                Some((k, m)) => match m.split_once(": ") {
                    Some((sub, m)) if !sub.contains(' ') => (format!("{k}.{sub}"), m.to_owned()),
                    _ => (k.to_owned(), m.to_owned()),
                },
                None => ("policy".to_owned(), e),
            };
            errs.push(ConfigError::new(key, msg));
        }
        let sweep_interval = match parse_duration(&self.sweep_interval) {
            Ok(d) if d.is_zero() => {
                errs.push(ConfigError::new(
                    "sweep_interval",
                    "must be greater than zero",
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(ConfigError::new("sweep_interval", e));
                None
            }
        };
        let tokens = self.tokens.validate(&mut errs);
        let audit_retention = self.audit.validate(&mut errs);
        let trusted_proxies = sessionary_axum::TrustedProxies::parse(&self.trusted_proxies)
            .unwrap_or_else(|e| {
                errs.push(ConfigError::new(
                    "trusted_proxies",
                    format!("{e}; expected addresses or networks such as \"10.0.0.0/8\""),
                ));
                sessionary_axum::TrustedProxies::default()
            });
        let alerts = self.alerts.validate(&self.data_dir, &mut errs);
        let metrics = self.metrics.validate(&mut errs);
        let oidc = self.oidc.validate(&mut errs);
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(self.log.filter()) {
            errs.push(ConfigError::new(
                "log",
                format!("expected a log filter such as \"info\" or \"info,sessionary=debug\": {e}"),
            ));
        }
        match (
            listen,
            sweep_interval,
            tokens,
            alerts,
            audit_retention,
            oidc,
        ) {
            (
                Some(listen),
                Some(sweep_interval),
                Some(tokens),
                Some(alerts),
                Some(audit_retention),
                Some(oidc),
            ) if errs.is_empty() => Ok(Settings {
                listen,
                store_path: self
                    .store
                    .path
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("sessions.db")),
                store_exclusive: self.store.exclusive,
                store_postgres,
                store_redis,
                store_near_cache,
                data_dir: self.data_dir.clone(),
                store: self.store.kind,
                api_keys: self.api.keys.clone(),
                data_keys,
                policy: self.policy.clone(),
                sweep_interval,
                log: self.log.filter().to_owned(),
                log_format: self.log.format(),
                metrics,
                demo: self.demo.enabled,
                tokens,
                audit_retention,
                trusted_proxies,
                alerts,
                oidc,
            }),
            _ => Err(ConfigErrors(errs)),
        }
    }

    /// This configuration as TOML with every secret replaced by `REDACTED`
    /// (for `sessionary config-check`).
    ///
    /// # Errors
    ///
    /// If TOML serialization fails.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut c = self.clone();
        for k in c
            .api
            .keys
            .iter_mut()
            .chain(c.data_keys.iter_mut())
            .chain(c.alerts.smtp.password.iter_mut())
            .chain(c.alerts.webhook.secret.iter_mut())
            .chain(c.metrics.token.iter_mut())
            .chain(c.oidc.clients.iter_mut().filter_map(|c| c.secret.as_mut()))
        {
            *k = Secret::new("REDACTED");
        }
        if let Some(url) = &mut c.store.url {
            *url = Secret::new(redact_url(url.expose()));
        }
        if c.store.path.is_none() && c.store.kind == StoreKind::Sqlite {
            c.store.path = Some(c.data_dir.join("sessions.db"));
        }
        toml::to_string_pretty(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figment as `load` builds it, with `vars` standing in for the environment
    /// (tests cannot set real variables safely).
    fn env(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        for (k, v) in vars {
            let key = k
                .trim_start_matches(ENV_PREFIX)
                .to_ascii_lowercase()
                .replace("__", ".");
            let value: figment::value::Value = v.parse().unwrap_or_else(|e| match e {});
            fig = fig.merge(Serialized::default(&key, value));
        }
        fig.extract::<Config>().map_err(from_figment)
    }

    fn from_toml(text: &str) -> Result<Settings, ConfigErrors> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(from_figment)?
            .validate()
    }

    #[test]
    fn the_sso_example_registers_two_clients() {
        let text = include_str!("../../../examples/sso_client/sessionary.toml");
        let s = from_toml(text).unwrap();
        assert_eq!(s.oidc.issuer.as_deref(), Some("http://127.0.0.1:8080"));
        let ids: Vec<&str> = s.oidc.clients.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["app-a", "app-b"]);
        let b = &s.oidc.clients[1];
        assert_eq!(b.secret.as_deref(), Some("secret-b"));
        assert_eq!(b.redirect_uris, ["http://localhost:3002/callback"]);
        assert_eq!(
            b.backchannel_logout_uri.as_deref(),
            Some("http://localhost:3002/backchannel-logout")
        );
        assert_eq!(b.id_token_alg, sessionary_token::SigningAlg::EdDsa);
        // Secrets never reach config-check's output.
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap();
        let shown = c.to_redacted_toml().unwrap();
        assert!(
            !shown.contains("secret-a") && shown.contains("REDACTED"),
            "{shown}"
        );
    }

    #[test]
    fn oidc_clients_are_checked() {
        let err = from_toml(
            "[oidc]\nissuer = \"http://sso.example/\"\n\
             [[oidc.clients]]\nid = \"a b\"\nsecret = \"short\"\nredirect_uris = [\"/callback\"]\nid_token_alg = \"HS256\"\n\
             [[oidc.clients]]\nid = \"ok\"\nredirect_uris = []\nbackchannel_logout_uri = \"nope\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "oidc.issuer",
                "oidc.clients[0].id",
                "oidc.clients[0].secret",
                "oidc.clients[0].redirect_uris",
                "oidc.clients[0].id_token_alg",
                "oidc.clients[1].redirect_uris",
                "oidc.clients[1].backchannel_logout_uri",
            ],
            "{err}"
        );
        // RS256 is for ID tokens only, not access tokens.
        let err = from_toml("[tokens]\nalgorithm = \"RS256\"").unwrap_err();
        assert_eq!(err.0[0].key, "tokens.algorithm");
    }

    #[test]
    fn log_is_a_filter_or_a_table() {
        let s = from_toml("log = \"debug\"").unwrap();
        assert_eq!((s.log.as_str(), s.log_format), ("debug", LogFormat::Text));
        let s = from_toml("[log]\nformat = \"json\"").unwrap();
        assert_eq!((s.log.as_str(), s.log_format), ("info", LogFormat::Json));
        let s = from_toml("[log]\nfilter = \"warn\"\nformat = \"text\"").unwrap();
        assert_eq!((s.log.as_str(), s.log_format), ("warn", LogFormat::Text));
        let err = from_toml("[log]\nformat = \"xml\"").unwrap_err();
        assert_eq!(err.0[0].key, "log", "{err}");
        let err = from_toml("[log]\nfilter = \"info,[\"").unwrap_err();
        assert_eq!(err.0[0].key, "log", "{err}");
    }

    #[test]
    fn metrics_are_not_exposed_by_default() {
        let s = Config::default().validate().unwrap();
        assert!(s.metrics.enabled && s.metrics.listen.is_none() && s.metrics.token.is_none());
        // A public address needs a token.
        let err = from_toml("[metrics]\nlisten = \"0.0.0.0:9464\"").unwrap_err();
        assert_eq!(err.0[0].key, "metrics.listen", "{err}");
        let token = "t".repeat(MIN_API_KEY_LEN);
        let s = from_toml(&format!(
            "[metrics]\nlisten = \"0.0.0.0:9464\"\ntoken = \"{token}\""
        ))
        .unwrap();
        assert_eq!(s.metrics.listen.map(|a| a.port()), Some(9464));
        let err = from_toml("[metrics]\ntoken = \"short\"").unwrap_err();
        assert_eq!(err.0[0].key, "metrics.token", "{err}");
        let err = from_toml("[metrics]\nlisten = \"nowhere\"").unwrap_err();
        assert_eq!(err.0[0].key, "metrics.listen", "{err}");
        // The token never shows in config-check.
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(&format!("[metrics]\ntoken = \"{token}\"")))
            .extract()
            .unwrap();
        let shown = c.to_redacted_toml().unwrap();
        assert!(
            !shown.contains(&token) && shown.contains("REDACTED"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_validate() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.store, StoreKind::Sqlite);
        assert_eq!(s.store_path, PathBuf::from("./sessionary-data/sessions.db"));
        assert_eq!(s.sweep_interval, Duration::from_secs(60));
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = env(&[("SESSIONARY_POLICY__DEFAULT__IDLE_TIMEOUT", "soon")]).unwrap_err();
        assert_eq!(err.0[0].key, "policy.default.idle_timeout");
        assert!(err.0[0].message.contains("expected a duration"), "{err}");
    }

    #[test]
    fn nested_role_override_keeps_other_admin_defaults() {
        let c = env(&[("SESSIONARY_POLICY__ROLES__ADMIN__IDLE_TIMEOUT", "5m")]).unwrap();
        let admin = &c.policy.roles["admin"];
        assert_eq!(admin.idle_timeout, Duration::from_secs(300));
        assert_eq!(admin.max_sessions, Some(3));
        assert!(!admin.allow_remember);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = env(&[("SESSIONARY_LISTN", "x")]).unwrap_err();
        assert_eq!(err.0[0].key, "listn");
    }

    #[test]
    fn validation_names_keys() {
        let c = Config {
            listen: "localhost".into(),
            sweep_interval: "often".into(),
            data_keys: vec![Secret::new("x:abc")],
            api: ApiConfig {
                keys: vec![Secret::new("short")],
            },
            log: "info,[".into(),
            ..Config::default()
        };
        let errs = c.validate().unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listen",
                "api.keys[0]",
                "data_keys[0]",
                "sweep_interval",
                "log"
            ]
        );
    }

    #[test]
    fn policy_errors_name_the_policy() {
        let mut c = Config::default();
        c.policy.default.idle_timeout = Duration::from_secs(100 * 3600);
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.0[0].key, "policy.default");
    }

    #[test]
    fn quotas_load_from_toml_and_errors_name_the_key() {
        use sessionary_core::{QuotaLimit, Window};
        let toml = r#"
            [policy.roles.user.quotas]
            upload_max = "10MB"
            bytes_out = { limit = "1GiB", per = "1d" }
            [policy.roles.user.quotas.units]
            downloads = { limit = 5, per = "session" }
        "#;
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml));
        let c: Config = fig.extract().unwrap();
        let q = &c.policy.roles["user"].quotas;
        assert_eq!(q.upload_max, Some(10_000_000));
        assert_eq!(
            q.bytes_out,
            Some(QuotaLimit::every(1 << 30, Duration::from_secs(86_400)))
        );
        assert_eq!(q.units["downloads"].per, Window::Session);
        c.validate().unwrap();

        // Unparsable values name their key.
        let bad = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map_err(from_figment)
                .unwrap_err()
        };
        let err = bad("[policy.default.quotas]\nupload_max = \"huge\"");
        assert_eq!(err.0[0].key, "policy.default.quotas.upload_max", "{err}");
        assert!(err.0[0].message.contains("\"10MB\""), "{err}");
        let err = bad("[policy.default.quotas.units]\nd = { limit = 1, per = \"weekly\" }");
        assert!(
            err.0[0].key.starts_with("policy.default.quotas.units.d"),
            "{err}"
        );
        assert!(err.0[0].message.contains("\"session\""), "{err}");
        let err = bad("[policy.default.quotas]\nbytes_out = { limit = 1, every = \"1h\" }");
        assert!(err.0[0].key.contains("bytes_out"), "{err}");

        // From the environment, one field at a time; the defaults stay.
        let c = env(&[
            (
                "SESSIONARY_POLICY__ROLES__USER__QUOTAS__UNITS__EXPORTS__LIMIT",
                "3",
            ),
            ("SESSIONARY_POLICY__DEFAULT__QUOTAS__UPLOAD_MAX", "2MiB"),
        ])
        .unwrap();
        assert_eq!(
            c.policy.roles["user"].quotas.units["exports"],
            QuotaLimit::per_session(3)
        );
        assert_eq!(c.policy.default.quotas.upload_max, Some(2 << 20));
        assert_eq!(c.policy.default.quotas.units["downloads"].limit, 5);

        // Values that parse but break a rule name the field.
        let mut c = Config::default();
        c.policy
            .anonymous
            .quotas
            .units
            .insert("downloads".into(), QuotaLimit::per_session(0));
        let errs = c.validate().unwrap_err();
        assert_eq!(
            errs.0[0].key,
            "policy.anonymous.quotas.units.downloads.limit"
        );
        assert!(errs.0[0].message.contains("greater than zero"), "{errs}");
        let mut c = Config::default();
        c.policy.default.quotas.bytes_in = Some(QuotaLimit::every(1, Duration::from_secs(1)));
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.0[0].key, "policy.default.quotas.bytes_in.per");
    }

    #[test]
    fn redacted_toml_hides_secrets() {
        let c = Config {
            api: ApiConfig {
                keys: vec![Secret::new("k".repeat(40))],
            },
            ..Config::default()
        };
        let t = c.to_redacted_toml().unwrap();
        assert!(!t.contains(&"k".repeat(40)));
        assert!(t.contains("REDACTED"));
        assert!(format!("{c:?}").contains("REDACTED"));
    }

    #[test]
    fn postgres_store_from_the_environment() {
        let c = env(&[
            ("SESSIONARY_STORE__KIND", "postgres"),
            (
                "SESSIONARY_STORE__URL",
                "postgres://app:s3cret@db:5432/sessions",
            ),
            ("SESSIONARY_STORE__MAX_CONNECTIONS", "20"),
            ("SESSIONARY_STORE__STATEMENT_TIMEOUT", "0s"),
        ])
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.store, StoreKind::Postgres);
        let pg = s.store_postgres.as_ref().unwrap();
        assert_eq!(pg.url.expose(), "postgres://app:s3cret@db:5432/sessions");
        // Neither config-check nor Debug shows the password.
        let t = c.to_redacted_toml().unwrap();
        assert!(!t.contains("s3cret"), "{t}");
        assert!(
            t.contains("postgres://app:REDACTED@db:5432/sessions"),
            "{t}"
        );
        assert!(!t.contains("sessions.db"), "{t}");
        assert!(!format!("{c:?} {s:?}").contains("s3cret"));
        assert!(
            Config::default()
                .validate()
                .unwrap()
                .store_postgres
                .is_none()
        );
    }

    #[test]
    fn postgres_store_errors_name_keys() {
        let c = env(&[("SESSIONARY_STORE__KIND", "postgres")]).unwrap();
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.0[0].key, "store.url");
        assert!(errs.0[0].message.contains("required"), "{errs}");

        let c = env(&[
            ("SESSIONARY_STORE__KIND", "postgres"),
            ("SESSIONARY_STORE__URL", "mysql://u:s3cret@h/d"),
            ("SESSIONARY_STORE__PATH", "/tmp/x.db"),
            ("SESSIONARY_STORE__MAX_CONNECTIONS", "0"),
            ("SESSIONARY_STORE__ACQUIRE_TIMEOUT", "1h"),
        ])
        .unwrap();
        let errs = c.validate().unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "store.path",
                "store.url",
                "store.max_connections",
                "store.acquire_timeout"
            ]
        );
        assert!(!errs.to_string().contains("s3cret"), "{errs}");

        // A URL the chosen store would ignore is a mistake.
        let c = env(&[("SESSIONARY_STORE__URL", "postgres://h/d")]).unwrap();
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.0[0].key, "store.url");
        assert!(errs.0[0].message.contains("only used"), "{errs}");
    }

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            ("postgres://h/d", "postgres://h/d"),
            ("postgres://u@h/d", "postgres://u@h/d"),
            ("postgres://u:p@h", "postgres://u:REDACTED@h"),
            (
                "postgres://u:p@ss@h:1/d?a=1",
                "postgres://u:REDACTED@h:1/d?a=1",
            ),
            (
                "postgresql://h/d?user=u&PASSWORD=p&x=y",
                "postgresql://h/d?user=u&PASSWORD=REDACTED&x=y",
            ),
            ("u:p@h", "REDACTED"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn audit_retention_is_validated() {
        let c = env(&[("SESSIONARY_AUDIT__RETENTION", "30d")]).unwrap();
        assert_eq!(
            c.validate().unwrap().audit_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            Config::default().validate().unwrap().audit_retention,
            Duration::from_secs(90 * 86_400)
        );
        for bad in ["10m", "forever"] {
            let c = Config {
                audit: AuditConfig {
                    retention: bad.into(),
                },
                ..Config::default()
            };
            let errs = c.validate().unwrap_err();
            assert_eq!(errs.0[0].key, "audit.retention", "{bad}");
        }
        let err = env(&[("SESSIONARY_AUDIT__KEEP", "1d")]).unwrap_err();
        assert_eq!(err.0[0].key, "audit.keep");
    }

    #[test]
    fn alerts_default_to_the_outbox_in_the_data_dir() {
        let s = Config::default().validate().unwrap();
        assert!(matches!(
            s.alerts.notifier,
            AlertNotifier::Outbox(ref p) if p == &PathBuf::from("./sessionary-data/outbox.jsonl")
        ));
        assert_eq!(s.alerts.max_per_hour, 3);
    }

    #[test]
    fn alerts_smtp_and_webhook_are_checked_when_chosen() {
        let c = env(&[
            ("SESSIONARY_ALERTS__NOTIFIER", "smtp"),
            ("SESSIONARY_ALERTS__SMTP__FROM", "not an address"),
            ("SESSIONARY_ALERTS__SMTP__TIMEOUT", "10m"),
            ("SESSIONARY_ALERTS__SMTP__USERNAME", "u"),
        ])
        .unwrap();
        let errs = c.validate().unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.smtp.host",
                "alerts.smtp.timeout",
                "alerts.smtp.username",
                "alerts.smtp.from"
            ],
            "{errs}"
        );

        let c = env(&[
            ("SESSIONARY_ALERTS__NOTIFIER", "smtp"),
            ("SESSIONARY_ALERTS__SMTP__HOST", "smtp.example.com"),
            (
                "SESSIONARY_ALERTS__SMTP__FROM",
                "Sessionary <security@example.com>",
            ),
            ("SESSIONARY_ALERTS__SMTP__USERNAME", "u"),
            ("SESSIONARY_ALERTS__SMTP__PASSWORD", "hunter2"),
        ])
        .unwrap();
        let s = c.validate().unwrap();
        assert!(matches!(s.alerts.notifier, AlertNotifier::Smtp(ref m) if m.port == 587));
        let t = c.to_redacted_toml().unwrap();
        assert!(!t.contains("hunter2") && !format!("{c:?}").contains("hunter2"));

        let c = env(&[
            ("SESSIONARY_ALERTS__NOTIFIER", "webhook"),
            ("SESSIONARY_ALERTS__WEBHOOK__URL", "ftp://example.com"),
            ("SESSIONARY_ALERTS__WEBHOOK__SECRET", "short"),
            ("SESSIONARY_ALERTS__MAX_PER_HOUR", "0"),
        ])
        .unwrap();
        let errs = c.validate().unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.max_per_hour",
                "alerts.webhook.url",
                "alerts.webhook.secret"
            ],
            "{errs}"
        );
        let err = env(&[("SESSIONARY_ALERTS__NOTIFIER", "pigeon")]).unwrap_err();
        assert_eq!(err.0[0].key, "alerts.notifier", "{err}");
    }

    #[test]
    fn redis_store_needs_a_url_and_never_shows_its_password() {
        let c = env(&[("SESSIONARY_STORE__KIND", "redis")]).unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].key, "store.url", "{err}");

        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "redis://app:hunter2@cache:6379/2"),
            ("SESSIONARY_STORE__KEY_PREFIX", "shop:"),
        ])
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.store, StoreKind::Redis);
        let r = s.store_redis.as_ref().unwrap();
        assert_eq!(r.key_prefix, "shop:");
        assert_eq!(r.url.expose(), "redis://app:hunter2@cache:6379/2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let t = c.to_redacted_toml().unwrap();
        assert!(!t.contains("hunter2"), "{t}");
        assert!(t.contains("redis://app:REDACTED@cache:6379/2"), "{t}");

        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "http://:secret@cache"),
            ("SESSIONARY_STORE__KEY_PREFIX", "sh*p"),
        ])
        .unwrap();
        let err = c.validate().unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["store.url", "store.key_prefix"], "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");

        // Redis settings with another kind are refused, not ignored.
        let c = env(&[("SESSIONARY_STORE__URL", "redis://cache")]).unwrap();
        assert_eq!(c.validate().unwrap_err().0[0].key, "store.url");
        let c = env(&[("SESSIONARY_STORE__KEY_PREFIX", "x:")]).unwrap();
        assert_eq!(c.validate().unwrap_err().0[0].key, "store.key_prefix");
        let c = env(&[("SESSIONARY_STORE__REPLICA_ACKS", "1")]).unwrap();
        assert_eq!(c.validate().unwrap_err().0[0].key, "store.replica_acks");
    }

    #[test]
    fn redis_tls_ca_is_read_and_refused_where_it_does_not_apply() {
        let dir = sessionary_testkit::TempDir::new("config-tls-ca");
        let ca = dir.path().join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let ca = ca.to_str().unwrap();
        let tls = |url: &'static str, ca: &str| {
            env(&[
                ("SESSIONARY_STORE__KIND", "redis"),
                ("SESSIONARY_STORE__URL", url),
                ("SESSIONARY_STORE__TLS_CA", ca),
            ])
            .unwrap()
        };
        for url in [
            "rediss://:hunter2@cache:6380/1",
            "rediss+cluster://a:7000,b:7001",
            "rediss+sentinel://s1:26379,s2:26379/m",
        ] {
            let s = tls(url, ca).validate().unwrap();
            let r = s.store_redis.unwrap();
            let (path, read) = r.tls_ca.unwrap();
            assert_eq!(path.to_str(), Some(ca));
            assert_eq!(read, pem.as_bytes());
        }
        let t = tls("rediss://:hunter2@cache:6380/1", ca)
            .to_redacted_toml()
            .unwrap();
        assert!(t.contains("tls_ca"), "{t}");
        assert!(!t.contains("hunter2"), "{t}");

        // A plain URL with a CA is a mistake, said with the key's name.
        let err = tls("redis://:hunter2@cache:6379", ca)
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_ca", "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // A file that is missing or holds no certificate.
        let missing = dir.path().join("missing.pem");
        let err = tls("rediss://cache", missing.to_str().unwrap())
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_ca", "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let err = tls("rediss://cache", empty.to_str().unwrap())
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_ca", "{err}");
        // A certificate block that is not valid PEM (what the store would
        // refuse at connect) is refused here already.
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = tls("rediss://cache", broken.to_str().unwrap())
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_ca", "{err}");
        assert!(
            err.to_string().contains("no valid PEM certificate"),
            "{err}"
        );
        // Another kind.
        let c = env(&[("SESSIONARY_STORE__TLS_CA", ca)]).unwrap();
        assert_eq!(c.validate().unwrap_err().0[0].key, "store.tls_ca");
        // TLS URLs are accepted as they are, without a CA (webpki roots).
        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "rediss://cache:6380"),
        ])
        .unwrap();
        assert!(c.validate().unwrap().store_redis.unwrap().tls_ca.is_none());
        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "rediss://cache:6380#insecure"),
        ])
        .unwrap();
        assert_eq!(c.validate().unwrap_err().0[0].key, "store.url");
    }

    #[test]
    fn redis_tls_client_certificate_is_read_and_its_key_never_shown() {
        let dir = sessionary_testkit::TempDir::new("config-tls-identity");
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEY\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let with = |url: &'static str, extra: &[(&'static str, &str)]| {
            let mut vars = vec![
                ("SESSIONARY_STORE__KIND", "redis"),
                ("SESSIONARY_STORE__URL", url),
            ];
            vars.extend_from_slice(extra);
            env(&vars).unwrap()
        };
        let both = [
            ("SESSIONARY_STORE__TLS_CERT", cert),
            ("SESSIONARY_STORE__TLS_KEY", key),
        ];
        let s = with("rediss://cache:6380", &both).validate().unwrap();
        let i = s
            .store_redis
            .as_ref()
            .unwrap()
            .tls_identity
            .as_ref()
            .unwrap();
        assert!(i.key.expose().contains("TOPSECRETKEY"));
        assert!(String::from_utf8_lossy(&i.cert).contains("MIIB"));
        assert!(!format!("{s:?}").contains("TOPSECRETKEY"));
        // One without the other.
        let err = with("rediss://cache:6380", &both[..1])
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_key", "{err}");
        let err = with("rediss://cache:6380", &both[1..])
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_cert", "{err}");
        // A key file that holds a certificate, and a plain URL.
        let err = with(
            "rediss://cache:6380",
            &[
                ("SESSIONARY_STORE__TLS_CERT", cert),
                ("SESSIONARY_STORE__TLS_KEY", cert),
            ],
        )
        .validate()
        .unwrap_err();
        assert_eq!(err.0[0].key, "store.tls_key", "{err}");
        let err = with("redis://cache:6379", &both).validate().unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["store.tls_cert", "store.tls_key"], "{err}");
        assert!(!err.to_string().contains("TOPSECRETKEY"), "{err}");
    }

    #[test]
    fn a_redis_cluster_url_is_accepted_without_replica_acks() {
        let cluster = [
            ("SESSIONARY_STORE__KIND", "redis"),
            (
                "SESSIONARY_STORE__URL",
                "redis+cluster://app:hunter2@a:7000,b:7001",
            ),
        ];
        let c = env(&cluster).unwrap();
        let s = c.validate().unwrap();
        assert_eq!(
            s.store_redis.unwrap().url.expose(),
            "redis+cluster://app:hunter2@a:7000,b:7001"
        );
        let t = c.to_redacted_toml().unwrap();
        assert!(
            t.contains("redis+cluster://app:REDACTED@a:7000,b:7001"),
            "{t}"
        );
        let mut vars = cluster.to_vec();
        vars.push(("SESSIONARY_STORE__REPLICA_ACKS", "1"));
        let err = env(&vars).unwrap().validate().unwrap_err();
        assert_eq!(err.0[0].key, "store.replica_acks", "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redis_replica_acks_are_validated() {
        let redis = [
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "redis://cache:6379"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut vars = redis.to_vec();
            vars.extend_from_slice(extra);
            env(&vars).unwrap().validate()
        };
        let s = with(&[]).unwrap();
        assert_eq!(s.store_redis.unwrap().replica_acks, None);
        let s = with(&[("SESSIONARY_STORE__REPLICA_ACKS", "1")]).unwrap();
        assert_eq!(
            s.store_redis.unwrap().replica_acks,
            Some((1, Duration::from_millis(100)))
        );
        let s = with(&[
            ("SESSIONARY_STORE__REPLICA_ACKS", "2"),
            ("SESSIONARY_STORE__REPLICA_ACK_TIMEOUT", "250ms"),
        ])
        .unwrap();
        assert_eq!(
            s.store_redis.unwrap().replica_acks,
            Some((2, Duration::from_millis(250)))
        );
        for (extra, key) in [
            (
                &[("SESSIONARY_STORE__REPLICA_ACKS", "0")][..],
                "store.replica_acks",
            ),
            (
                &[
                    ("SESSIONARY_STORE__REPLICA_ACKS", "1"),
                    ("SESSIONARY_STORE__REPLICA_ACK_TIMEOUT", "5s"),
                ][..],
                "store.replica_ack_timeout",
            ),
            (
                &[("SESSIONARY_STORE__REPLICA_ACK_TIMEOUT", "100ms")][..],
                "store.replica_ack_timeout",
            ),
        ] {
            let err = with(extra).unwrap_err();
            assert_eq!(err.0[0].key, key, "{err}");
        }
    }

    #[test]
    fn malformed_cluster_and_sentinel_urls_are_refused_at_config_time() {
        for url in [
            "redis+cluster://a",
            "redis+cluster://u:hunter2@a:7000/1",
            "redis+sentinel://u:hunter2@s:26379",
            "redis+sentinel://s:26379/m/x",
        ] {
            let err = env(&[
                ("SESSIONARY_STORE__KIND", "redis"),
                ("SESSIONARY_STORE__URL", url),
            ])
            .unwrap()
            .validate()
            .unwrap_err();
            assert_eq!(err.0[0].key, "store.url", "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_near_cache_is_for_shared_stores_and_bounded() {
        let redis = [
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", "redis://cache:6379"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut vars = redis.to_vec();
            vars.extend_from_slice(extra);
            env(&vars).unwrap().validate()
        };
        assert_eq!(with(&[]).unwrap().store_near_cache, None);
        let on = with(&[("SESSIONARY_STORE__NEAR_CACHE", "500ms")]).unwrap();
        assert_eq!(on.store_near_cache, Some(Duration::from_millis(500)));
        let off = with(&[("SESSIONARY_STORE__NEAR_CACHE", "0s")]).unwrap();
        assert_eq!(off.store_near_cache, None);
        for bad in ["2m", "1ms", "soon"] {
            let err = with(&[("SESSIONARY_STORE__NEAR_CACHE", bad)]).unwrap_err();
            assert_eq!(err.0[0].key, "store.near_cache", "{bad}: {err}");
        }
        let err = env(&[("SESSIONARY_STORE__NEAR_CACHE", "1s")])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.0[0].key, "store.near_cache", "{err}");
        assert!(err.0[0].to_string().contains("shared stores"), "{err}");
    }

    #[test]
    fn redis_urls_are_redacted() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:REDACTED@h:1/0");
        assert_eq!(redact_url("redis://u:p@ss@h"), "redis://u:REDACTED@h");
        assert_eq!(redact_url("garbage:pw"), "REDACTED");
        assert_eq!(
            redact_url("redis+cluster://u:pw@a:7000,b:7001"),
            "redis+cluster://u:REDACTED@a:7000,b:7001"
        );
        assert_eq!(
            redact_url("redis+sentinel://u:pw@s1:26379,s2:26380/shop/2"),
            "redis+sentinel://u:REDACTED@s1:26379,s2:26380/shop/2"
        );
        assert_eq!(
            redact_url("redis+sentinel://s1:26379,s2:26380/shop"),
            "redis+sentinel://s1:26379,s2:26380/shop"
        );
        // Raw separators in a password (malformed) stay hidden too.
        assert_eq!(
            redact_url("redis://:pa/ss@h:1/0"),
            "redis://:REDACTED@h:1/0"
        );
        assert_eq!(redact_url("redis://:pa?ss@h"), "redis://:REDACTED@h");
        assert_eq!(redact_url("redis://u:pa#ss@h/2"), "redis://u:REDACTED@h/2");
        assert_eq!(
            redact_url("postgres://u@h/d?password=p@x"),
            "postgres://u@h/d?password=REDACTED"
        );
    }

    #[test]
    fn redis_sentinel_urls_are_accepted_and_redacted() {
        let url = "redis+sentinel://app:hunter2@s1:26379,s2:26379,s3:26379/shop/1";
        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            ("SESSIONARY_STORE__URL", url),
        ])
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.store_redis.as_ref().unwrap().url.expose(), url);
        assert!(!format!("{s:?}").contains("hunter2"));
        let t = c.to_redacted_toml().unwrap();
        assert!(!t.contains("hunter2"), "{t}");
        assert!(
            t.contains("redis+sentinel://app:REDACTED@s1:26379,s2:26379,s3:26379/shop/1"),
            "{t}"
        );
        let c = env(&[
            ("SESSIONARY_STORE__KIND", "redis"),
            (
                "SESSIONARY_STORE__URL",
                // No master name.
                "rediss+sentinel://app:hunter2@s1:1",
            ),
        ])
        .unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].key, "store.url", "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
