//! The administration commands of the `sessionary` binary: `sessions list`,
//! `sessions revoke`, `keys rotate` and `users ...`. Each reads the same
//! configuration as `serve` and works on the configured store and data folder.
//!
//! # Reaching running nodes
//!
//! - PostgreSQL and Redis: the store is shared and authoritative, so a running
//!   node refuses a revoked session at its next verification (a node with a
//!   near cache drops its copy when it hears the event, at worst after its
//!   `max_age`); the `ended`
//!   event is also published through the store's fanout (`LISTEN/NOTIFY`,
//!   pub/sub), so running nodes' event streams and access-token revocation
//!   lists hear it. [`revoke`] waits until its own message came back on the
//!   channel (at most [`FANOUT_WAIT`]) before it returns.
//! - SQLite: there is no fanout. A node started with `[store] exclusive =
//!   false` reads the file on every verification, so it refuses the session at
//!   once; access tokens it issued for that session stay valid until they
//!   expire (10 minutes by default). A node with `exclusive = true` (the
//!   default) locks the file and serves from memory: the command cannot open
//!   the file while it runs and says so.
//! - Keys live in files of the data folder, which `serve` reads at start:
//!   rotated keys reach a running node when it restarts. The demo's accounts
//!   file is re-read by a running node at its next sign-in after it changed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sessionary_core::{
    EndReason, KeyRing, RemoteKind, SessionId, SessionManager, SessionRecord, SystemClock, UserId,
};

use crate::config::Settings;
use crate::demo::{DemoUsers, DemoUsersError};
use crate::serve::{self, DATA_KEYS_FILE, OpenedStore, ServeError, TOKEN_KEYS_FILE};

/// How long [`revoke`] waits for its event to come back through the fanout.
pub const FANOUT_WAIT: Duration = Duration::from_secs(5);

/// What an administration command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Opening the store or the key files failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The engine refused (store errors, an unknown session).
    #[error(transparent)]
    Engine(#[from] sessionary_core::Error),
    /// The SQLite file is held by a running server.
    #[error(
        "the SQLite file {} is locked by a running `sessionary serve` with `[store] exclusive = \
         true`; stop it, or run it with `exclusive = false` to administer it while it runs",
        .0.display()
    )]
    Locked(PathBuf),
    /// Bad input (a malformed id or user name, a missing argument).
    #[error("{0}")]
    Usage(String),
    /// No such session or account.
    #[error("{0}")]
    NotFound(String),
    /// The demo users file.
    #[error(transparent)]
    Users(#[from] DemoUsersError),
    /// Key files.
    #[error("{what} {}", path.display())]
    Keys {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CliError {
    /// Whether this is the caller's mistake (exit code 64) rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Usage(_) | Self::Locked(_) | Self::Users(DemoUsersError::Refused(_))
        )
    }
}

/// The store and a manager over it, as `serve` would build them (same
/// policy and data keys, and the store's fanout on shared stores).
struct Admin {
    manager: SessionManager,
    opened: OpenedStore,
}

impl Admin {
    async fn open(settings: &Settings) -> Result<Self, CliError> {
        let mut settings = settings.clone();
        // Never take the exclusive lock: a running server may use the file.
        settings.store_exclusive = false;
        if settings.store == crate::config::StoreKind::Memory {
            return Err(CliError::Usage(
                "the store is `memory`: its sessions live only inside the running server".into(),
            ));
        }
        let opened = match serve::open_store(&settings).await {
            Ok(o) => o,
            Err(ServeError::Store { path, source }) if is_locked(&source) => {
                return Err(CliError::Locked(path));
            }
            Err(e) => return Err(e.into()),
        };
        let mut builder = SessionManager::builder(Arc::clone(&opened.store))
            .with_clock(Arc::new(SystemClock))
            .with_policy(settings.policy.clone())
            .with_keys(existing_data_keys(&settings)?);
        if let Some(fanout) = &opened.fanout {
            builder = builder.with_fanout(Arc::clone(fanout));
        }
        Ok(Self {
            manager: builder.build()?,
            opened,
        })
    }

    async fn close(self) {
        self.opened.close().await;
    }
}

/// The data keys when some exist; otherwise a throwaway ring (listing and
/// revoking never open session data, and no file is created here).
fn existing_data_keys(settings: &Settings) -> Result<KeyRing, CliError> {
    if settings.data_keys.is_empty() && !settings.data_dir.join(DATA_KEYS_FILE).exists() {
        let mut k = [0u8; 32];
        sessionary_core::token::fill_random(&mut k)?;
        return KeyRing::new(1, k).map_err(|e| CliError::Engine(e.into()));
    }
    Ok(serve::data_keys(settings)?)
}

/// SQLite's "database is locked" (another process holds the exclusive lock).
fn is_locked(e: &sessionary_core::StoreError) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        let text = s.to_string();
        if text.contains("database is locked") || text.contains("SQLITE_BUSY") {
            return true;
        }
        src = s.source();
    }
    false
}

fn user_id(name: &str) -> Result<UserId, CliError> {
    UserId::new(name).map_err(|e| CliError::Usage(format!("bad user name {name:?}: {e}")))
}

fn one_line(rec: &SessionRecord) -> String {
    let expires = rec.expires_at();
    format!(
        "{}  {}  created {}  last seen {}  expires {}  {}  {}",
        rec.id,
        rec.user.as_ref().map_or("-", UserId::as_str),
        rec.created_at,
        rec.last_seen_at,
        expires,
        rec.device.label.as_deref().unwrap_or("unknown device"),
        rec.device
            .ip
            .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
    )
}

/// `sessionary sessions list --user U`: the user's live sessions, oldest
/// first, one a line (`json`: one JSON object a line, as the API shows them).
///
/// # Errors
///
/// [`CliError`].
pub async fn list(settings: &Settings, user: &str, json: bool) -> Result<String, CliError> {
    let user = user_id(user)?;
    let admin = Admin::open(settings).await?;
    let listed = admin.manager.list(&user).await;
    admin.close().await;
    let mut out = String::new();
    for rec in listed? {
        if json {
            let view = crate::api::SessionView::from(&*rec);
            let line = serde_json::to_string(&view)
                .map_err(|e| CliError::Usage(format!("cannot print a session: {e}")))?;
            out.push_str(&line);
        } else {
            out.push_str(&one_line(&rec));
        }
        out.push('\n');
    }
    Ok(out)
}

/// What [`revoke`] should end.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// One session by its public id.
    Session(String),
    /// Every session of a user.
    User(String),
}

/// `sessionary sessions revoke <id> | --user U`: ends the sessions with
/// reason `revoked_by_admin`, and on shared stores waits until the event went
/// out through the fanout. Returns what it says to the operator.
///
/// # Errors
///
/// [`CliError::NotFound`] for an unknown or already ended session, [`CliError`].
pub async fn revoke(settings: &Settings, target: &RevokeTarget) -> Result<String, CliError> {
    // Parse before opening anything: bad input changes nothing.
    enum Parsed {
        One(SessionId),
        All(UserId),
    }
    let parsed = match target {
        RevokeTarget::Session(id) => Parsed::One(
            id.parse::<SessionId>()
                .map_err(|e| CliError::Usage(format!("bad session id {id:?}: {e}")))?,
        ),
        RevokeTarget::User(u) => Parsed::All(user_id(u)?),
    };
    let admin = Admin::open(settings).await?;
    let mut heard = admin.opened.fanout.as_ref().map(|f| f.subscribe());
    let ended: Result<Vec<SessionId>, CliError> = match &parsed {
        Parsed::One(id) => match admin
            .manager
            .end_session(id, EndReason::RevokedByAdmin)
            .await
        {
            Ok(gone) => Ok(vec![gone.id]),
            Err(sessionary_core::Error::NotFound) => Err(CliError::NotFound(format!(
                "no live session {id} (unknown, or already ended)"
            ))),
            Err(e) => Err(e.into()),
        },
        Parsed::All(user) => admin
            .manager
            .end_user_sessions(user, None, EndReason::RevokedByAdmin)
            .await
            .map_err(CliError::from),
    };
    let ended = match ended {
        Ok(e) => e,
        Err(e) => {
            admin.close().await;
            return Err(e);
        }
    };
    let mut out = String::new();
    for id in &ended {
        let _ = writeln!(out, "revoked {id}");
    }
    if ended.is_empty() {
        out.push_str("no live sessions\n");
    }
    if let Some(rx) = heard.as_mut() {
        let mut waiting: Vec<SessionId> = ended.clone();
        let wait = async {
            while !waiting.is_empty() {
                match rx.recv().await {
                    Ok(ev) if matches!(ev.kind, RemoteKind::Ended { .. }) => {
                        waiting.retain(|id| Some(*id) != ev.session_id);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            waiting.is_empty()
        };
        match tokio::time::timeout(FANOUT_WAIT, wait).await {
            Ok(true) => {
                if !ended.is_empty() {
                    out.push_str("running nodes were notified through the store's fanout\n");
                }
            }
            _ => out.push_str(
                "warning: the fanout did not confirm the event; running nodes refuse the \
                 sessions at their next verification, but may keep serving event streams and \
                 access tokens until those expire\n",
            ),
        }
    }
    admin.close().await;
    Ok(out)
}

/// Which keys `keys rotate` replaces.
#[derive(Debug, Clone, Copy)]
pub struct RotateKeys {
    /// The data keys (`<data_dir>/data-keys`) that seal session data.
    pub data: bool,
    /// The access-token signing keys (`<data_dir>/token-keys`).
    pub tokens: bool,
}

/// `sessionary keys rotate`: a new data key that seals from now on (older
/// keys stay in the file and keep opening what they sealed), and a new
/// access-token signing key (retired keys keep verifying for the longest
/// token lifetime plus the leeway, then are pruned at the next rotation).
/// Both files are replaced atomically (0600). Running nodes use the new keys
/// after a restart.
///
/// # Errors
///
/// Keys set in the configuration (`data_keys`), unreadable or malformed files.
pub fn rotate_keys(settings: &Settings, which: RotateKeys) -> Result<String, CliError> {
    let mut out = String::new();
    serve::ensure_dir(&settings.data_dir)?;
    if which.data {
        if !settings.data_keys.is_empty() {
            return Err(CliError::Usage(
                "data keys are set in the configuration (`data_keys`): put a new key first \
                 there (ID:BASE64 of 32 random bytes) and keep the old ones after it"
                    .into(),
            ));
        }
        let id = rotate_data_keys(&settings.data_dir)?;
        let _ = writeln!(
            out,
            "data key {id} now seals session data; older keys still open what they sealed"
        );
    }
    if which.tokens {
        let revocations = sessionary_token::Revocations::new(Arc::new(SystemClock));
        let tokens = serve::access_tokens(settings, Arc::new(SystemClock), revocations)?;
        let alg = settings.tokens.algorithm;
        let path = settings.data_dir.join(TOKEN_KEYS_FILE);
        let key_err = |what| {
            let path = path.clone();
            move |e: sessionary_token::AccessTokenError| CliError::Keys {
                what,
                path,
                source: Box::new(e),
            }
        };
        let key =
            sessionary_token::SigningKey::generate(alg).map_err(key_err("cannot generate"))?;
        let kid = key.kid().to_owned();
        tokens.rotate(key).map_err(key_err("cannot rotate"))?;
        let pruned = tokens.prune();
        let ring = tokens.key_ring();
        ring.save(&path).map_err(key_err("cannot write"))?;
        let _ = writeln!(
            out,
            "access tokens: key {kid} ({}) now signs; {} key(s) verify (retired ones for {:?}); \
             {pruned} expired key(s) dropped",
            alg.as_str(),
            ring.len(),
            tokens.retired_key_window(),
        );
    }
    out.push_str("restart running nodes for them to use the new keys\n");
    Ok(out)
}

/// Puts a new key first in `<dir>/data-keys` (id = highest + 1); returns its id.
fn rotate_data_keys(dir: &Path) -> Result<u32, CliError> {
    let path = dir.join(DATA_KEYS_FILE);
    let err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| CliError::Keys {
            what,
            path,
            source: Box::new(e),
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err("cannot read", &path)(e)),
    };
    let mut specs = Vec::new();
    let mut highest = 0u32;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, _) = KeyRing::parse_key(line).map_err(|e| CliError::Keys {
            what: "malformed key in",
            path: path.clone(),
            source: Box::new(e),
        })?;
        highest = highest.max(id);
        specs.push(line.to_owned());
    }
    let id = highest
        .checked_add(1)
        .ok_or_else(|| CliError::Usage("no data key id left".into()))?;
    let mut key = [0u8; 32];
    sessionary_core::token::fill_random(&mut key)?;
    let mut new_text = format!(
        "# Sessionary data keys: ID:BASE64, the first seals.\n{}\n",
        KeyRing::format_key(id, &key)
    );
    for s in &specs {
        new_text.push_str(s);
        new_text.push('\n');
    }
    replace_secret_file(&path, &new_text).map_err(err("cannot write", &path))?;
    Ok(id)
}

/// Replaces `path` atomically with an owner-only file holding `text`
/// ([`sessionary_token::write_private_atomic`], as the key rings are saved).
fn replace_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    sessionary_token::write_private_atomic(path, text).map_err(|e| match e {
        sessionary_token::AccessTokenError::Io(e) => e,
        other => std::io::Error::other(other),
    })
}

/// What `users` does.
#[derive(Debug, Clone)]
pub enum UsersCommand {
    /// Every account and its role.
    List,
    /// A new account; `password` `None` draws one and prints it once.
    Add {
        /// The name.
        name: String,
        /// Its role.
        role: String,
        /// The password, if given.
        password: Option<String>,
    },
    /// A new password; `None` draws one.
    Passwd {
        /// The name.
        name: String,
        /// The password, if given.
        password: Option<String>,
    },
    /// Removes the account and ends its sessions (`user_disabled`).
    Remove {
        /// The name.
        name: String,
    },
}

/// `sessionary users ...` on the demo's accounts (`<data_dir>/demo-users`).
///
/// # Errors
///
/// Bad names or passwords, an unknown account, file and store errors.
pub async fn users(settings: &Settings, command: UsersCommand) -> Result<String, CliError> {
    let dir = settings.data_dir.clone();
    let file = dir.join(crate::demo::DEMO_USERS_FILE);
    if !file.exists() && !matches!(command, UsersCommand::Add { .. }) {
        return Err(CliError::NotFound(format!(
            "no demo accounts yet ({} does not exist; `sessionary serve` with the demo \
             creates it, or `sessionary users add`)",
            file.display()
        )));
    }
    match command {
        UsersCommand::List => {
            let users = DemoUsers::load(&file)?;
            let mut out = String::new();
            for (name, role) in users.accounts() {
                let _ = writeln!(out, "{name} {role}");
            }
            Ok(out)
        }
        UsersCommand::Add {
            name,
            role,
            password,
        } => {
            let name = user_id(&name)?;
            serve::ensure_dir(&dir)?;
            let (password, shown) = password_or_new(password)?;
            let users = if file.exists() {
                DemoUsers::load(&file)?
            } else {
                DemoUsers::empty_at(&file)?
            };
            tokio::task::spawn_blocking(move || users.add(&name, &role, &password))
                .await
                .map_err(|e| CliError::Usage(format!("interrupted: {e}")))??;
            Ok(shown.map_or_else(
                || "account added\n".to_owned(),
                |p| format!("account added; password {p} (shown once)\n"),
            ))
        }
        UsersCommand::Passwd { name, password } => {
            let name = user_id(&name)?;
            let (password, shown) = password_or_new(password)?;
            let users = DemoUsers::load(&file)?;
            tokio::task::spawn_blocking(move || users.set_password(&name, &password))
                .await
                .map_err(|e| CliError::Usage(format!("interrupted: {e}")))??;
            Ok(shown.map_or_else(
                || "password changed\n".to_owned(),
                |p| format!("password changed; new password {p} (shown once)\n"),
            ))
        }
        UsersCommand::Remove { name } => {
            let user = user_id(&name)?;
            let users = DemoUsers::load(&file)?;
            users.remove(&user)?;
            // Disabling a user ends all of its sessions.
            let mut out = format!("account {user} removed\n");
            match settings.store {
                crate::config::StoreKind::Memory => {}
                _ => {
                    let admin = Admin::open(settings).await?;
                    let ended = admin
                        .manager
                        .end_user_sessions(&user, None, EndReason::UserDisabled)
                        .await;
                    admin.close().await;
                    let _ = writeln!(out, "{} session(s) ended", ended?.len());
                }
            }
            Ok(out)
        }
    }
}

fn password_or_new(given: Option<String>) -> Result<(String, Option<String>), CliError> {
    match given {
        Some(p) => Ok((p, None)),
        None => {
            let p = crate::demo::new_password()?;
            Ok((p.clone(), Some(p)))
        }
    }
}
