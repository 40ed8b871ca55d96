//! The demo's two accounts: a user and an administrator, with Argon2id
//! password hashes kept in the data folder.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sessionary_core::UserId;

/// File in the data folder holding the demo accounts (`name role hash`, one a line).
pub const DEMO_USERS_FILE: &str = "demo-users";

/// The plain user's name.
pub const USER_NAME: &str = "alice";
/// The administrator's name.
pub const ADMIN_NAME: &str = "admin";

/// One demo account.
#[derive(Clone)]
struct Account {
    name: UserId,
    role: String,
    /// PHC string (`$argon2id$...`).
    hash: String,
}

/// The demo accounts. Passwords are only ever held as Argon2id hashes.
pub struct DemoUsers {
    accounts: RwLock<Vec<Account>>,
    /// Verified against for unknown names, so both answers take as long.
    dummy: String,
    /// The file the accounts are kept in, if any (password changes rewrite it).
    path: Option<PathBuf>,
    /// The file's modification time and length when last read or written.
    stamp: Mutex<Option<FileStamp>>,
}

/// A file's modification time and length.
type FileStamp = (Option<std::time::SystemTime>, u64);

impl Clone for DemoUsers {
    /// An independent copy: a password changed on one is not changed on the other.
    fn clone(&self) -> Self {
        Self {
            accounts: RwLock::new(
                self.accounts
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            ),
            dummy: self.dummy.clone(),
            path: self.path.clone(),
            stamp: Mutex::new(
                *self
                    .stamp
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        }
    }
}

impl fmt::Debug for DemoUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoUsers")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}

/// Shortest password accepted (NIST SP 800-63B-4: at least 8 characters).
pub(super) const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (Argon2 takes any length; this bounds the work).
pub(super) const MAX_PASSWORD_CHARS: usize = 256;

/// A freshly generated account, to show once.
#[derive(Clone)]
pub struct NewAccount {
    /// The user name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The password, shown once at the first start.
    pub password: String,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why the demo accounts could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum DemoUsersError {
    /// The file could not be read or written.
    #[error("{what} {}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file holds something else than demo accounts.
    #[error("{}: {message}; delete it to have new demo users generated", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No randomness for passwords or salts.
    #[error("the system random number generator failed")]
    Random,
    /// A new password was refused (too short, too long, unknown account).
    #[error("{0}")]
    Refused(&'static str),
}

fn hash(password: &str) -> Result<String, DemoUsersError> {
    let mut salt = [0u8; 16];
    sessionary_core::token::fill_random(&mut salt).map_err(|_| DemoUsersError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| DemoUsersError::Random)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| DemoUsersError::Random)
}

/// A password of 3 groups of 4 characters from an alphabet without look-alikes
/// (about 60 bits).
///
/// # Errors
///
/// [`DemoUsersError::Random`].
pub fn new_password() -> Result<String, DemoUsersError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    sessionary_core::token::fill_random(&mut bytes).map_err(|_| DemoUsersError::Random)?;
    let mut out = String::with_capacity(14);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 256 % 31 leaves a bias below 1 %: fine for a demo password.
        out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    Ok(out)
}

impl DemoUsers {
    /// `alice` (role `user`) and `admin` (role `admin`) with these passwords.
    ///
    /// # Errors
    ///
    /// [`DemoUsersError::Random`] if no salt can be drawn.
    pub fn from_passwords(user: &str, admin: &str) -> Result<Self, DemoUsersError> {
        Self::from_accounts(&[
            (USER_NAME, "user", &hash(user)?),
            (ADMIN_NAME, "admin", &hash(admin)?),
        ])
    }

    fn from_accounts(accounts: &[(&str, &str, &str)]) -> Result<Self, DemoUsersError> {
        let accounts = accounts
            .iter()
            .map(|(name, role, hash)| {
                Ok(Account {
                    name: UserId::new(*name).map_err(|_| DemoUsersError::Random)?,
                    role: (*role).to_owned(),
                    hash: (*hash).to_owned(),
                })
            })
            .collect::<Result<Vec<_>, DemoUsersError>>()?;
        Ok(Self {
            accounts: RwLock::new(accounts),
            dummy: hash("not a password")?,
            path: None,
            stamp: Mutex::new(None),
        })
    }

    /// The accounts kept in `<dir>/demo-users`, or new ones with random
    /// passwords written there (mode 0600), returned once to be shown.
    ///
    /// # Errors
    ///
    /// Unreadable, unwritable or malformed files.
    pub fn load_or_create(dir: &Path) -> Result<(Self, Vec<NewAccount>), DemoUsersError> {
        let path = dir.join(DEMO_USERS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mut users = Self::parse(&path, &text)?;
                users.path = Some(path);
                users.mark_loaded();
                Ok((users, Vec::new()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let fresh = vec![
                    NewAccount {
                        name: USER_NAME.into(),
                        role: "user".into(),
                        password: new_password()?,
                    },
                    NewAccount {
                        name: ADMIN_NAME.into(),
                        role: "admin".into(),
                        password: new_password()?,
                    },
                ];
                let mut text = String::from(
                    "# Sessionary demo accounts: name role argon2id-hash. Delete this file \
                     for new passwords.\n",
                );
                let mut rows = Vec::new();
                for a in &fresh {
                    let h = hash(&a.password)?;
                    text.push_str(&format!("{} {} {h}\n", a.name, a.role));
                    rows.push((a.name.clone(), a.role.clone(), h));
                }
                write_new(&path, &text)?;
                let refs: Vec<(&str, &str, &str)> = rows
                    .iter()
                    .map(|(n, r, h)| (n.as_str(), r.as_str(), h.as_str()))
                    .collect();
                let mut users = Self::from_accounts(&refs)?;
                users.path = Some(path);
                users.mark_loaded();
                Ok((users, fresh))
            }
            Err(source) => Err(DemoUsersError::File {
                what: "cannot read",
                path,
                source,
            }),
        }
    }

    fn parse_accounts(path: &Path, text: &str) -> Result<Vec<Account>, DemoUsersError> {
        let malformed = |message: String| DemoUsersError::Malformed {
            path: path.to_owned(),
            message,
        };
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(role), Some(h), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed(format!("line {} is not `name role hash`", i + 1)));
            };
            if UserId::new(name).is_err() || PasswordHash::new(h).is_err() {
                return Err(malformed(format!("line {} is not a valid account", i + 1)));
            }
            rows.push(Account {
                name: UserId::new(name)
                    .map_err(|_| malformed(format!("line {} is not a valid account", i + 1)))?,
                role: role.to_owned(),
                hash: h.to_owned(),
            });
        }
        if rows.is_empty() {
            return Err(malformed("no accounts".into()));
        }
        Ok(rows)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, DemoUsersError> {
        let accounts = Self::parse_accounts(path, text)?;
        let mut users = Self::from_accounts(&[])?;
        users.accounts = RwLock::new(accounts);
        Ok(users)
    }

    /// The file's modification time and length now, if it can be read.
    fn stamp_now(&self) -> Option<FileStamp> {
        let md = fs::metadata(self.path.as_ref()?).ok()?;
        Some((md.modified().ok(), md.len()))
    }

    /// Notes the file as it is now as what the accounts in memory hold.
    fn mark_loaded(&self) {
        *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.stamp_now();
    }

    /// Re-reads the file if it changed since it was loaded (another process,
    /// such as `sessionary users`, rewrote it), so a running server follows
    /// added, removed and re-passworded accounts. A file that is gone or
    /// malformed leaves the accounts as they were (with a warning).
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = self.stamp_now();
        // Never held together with `accounts` (writers take that first).
        let seen = *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.is_none() || seen == now {
            return;
        }
        let read = fs::read_to_string(path)
            .map_err(|source| DemoUsersError::File {
                what: "cannot read",
                path: path.clone(),
                source,
            })
            .and_then(|text| Self::parse_accounts(path, &text));
        match read {
            Ok(accounts) => {
                *self
                    .accounts
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = accounts;
                tracing::info!(file = %path.display(), "demo accounts reloaded");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "demo accounts file changed but cannot be used; keeping the accounts loaded before"
            ),
        }
        *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    /// The account's name and role if `password` is right. Slow on purpose
    /// (Argon2id): call it off the async threads ([`tokio::task::spawn_blocking`]).
    /// An unknown name costs as much as a wrong password.
    pub fn check(&self, name: &str, password: &str) -> Option<(UserId, String)> {
        self.refresh();
        // Copied out so the lock is not held through Argon2.
        let account = self
            .accounts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|a| a.name.as_str() == name)
            .cloned();
        let phc = account
            .as_ref()
            .map_or(self.dummy.as_str(), |a| a.hash.as_str());
        let ok = PasswordHash::new(phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        account.filter(|_| ok).map(|a| (a.name, a.role))
    }

    /// Sets a new password (8 to 256 characters) and rewrites the accounts
    /// file, if there is one, atomically (a new file renamed over the old).
    /// Slow on purpose (Argon2id): call it off the async threads.
    ///
    /// # Errors
    ///
    /// [`DemoUsersError::Refused`] for a password out of bounds or an unknown
    /// account; file errors.
    pub fn set_password(&self, name: &UserId, password: &str) -> Result<(), DemoUsersError> {
        check_password(password)?;
        let new_hash = hash(password)?;
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = accounts.iter().position(|a| &a.name == name) else {
            return Err(DemoUsersError::Refused("no such account"));
        };
        let mut updated = accounts.clone();
        updated[i].hash = new_hash;
        self.save(&updated)?;
        *accounts = updated;
        Ok(())
    }

    /// Rewrites the accounts file, if there is one, atomically (a new file
    /// renamed over the old).
    fn save(&self, accounts: &[Account]) -> Result<(), DemoUsersError> {
        if let Some(path) = &self.path {
            let mut text = String::from(
                "# Sessionary demo accounts: name role argon2id-hash. Delete this file \
                 for new passwords.\n",
            );
            for a in accounts {
                text.push_str(&format!("{} {} {}\n", a.name, a.role, a.hash));
            }
            let tmp = path.with_extension("new");
            let _ = fs::remove_file(&tmp);
            write_new(&tmp, &text)?;
            fs::rename(&tmp, path).map_err(|source| DemoUsersError::File {
                what: "cannot replace",
                path: path.clone(),
                source,
            })?;
            // What is written is what memory will hold: no reload for it.
            self.mark_loaded();
        }
        Ok(())
    }

    /// The accounts kept in `path` (which must exist).
    ///
    /// # Errors
    ///
    /// Unreadable or malformed files.
    pub fn load(path: &Path) -> Result<Self, DemoUsersError> {
        let text = fs::read_to_string(path).map_err(|source| DemoUsersError::File {
            what: "cannot read",
            path: path.to_owned(),
            source,
        })?;
        let mut users = Self::parse(path, &text)?;
        users.path = Some(path.to_owned());
        users.mark_loaded();
        Ok(users)
    }

    /// No accounts yet, to be kept in `path` by [`DemoUsers::add`].
    ///
    /// # Errors
    ///
    /// [`DemoUsersError::Random`].
    pub fn empty_at(path: &Path) -> Result<Self, DemoUsersError> {
        let mut users = Self::from_accounts(&[])?;
        users.path = Some(path.to_owned());
        Ok(users)
    }

    /// Adds an account (a user name, a role of letters, digits, `_` or `-`,
    /// a password of 8 to 256 characters) and rewrites the file. Slow on
    /// purpose (Argon2id).
    ///
    /// # Errors
    ///
    /// [`DemoUsersError::Refused`] for a taken name, a bad role or password;
    /// file errors.
    pub fn add(&self, name: &UserId, role: &str, password: &str) -> Result<(), DemoUsersError> {
        if role.is_empty()
            || role.len() > 64
            || !role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(DemoUsersError::Refused(
                "the role must be 1 to 64 letters, digits, `_` or `-`",
            ));
        }
        check_password(password)?;
        let new_hash = hash(password)?;
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if accounts.iter().any(|a| &a.name == name) {
            return Err(DemoUsersError::Refused("an account with this name exists"));
        }
        let mut updated = accounts.clone();
        updated.push(Account {
            name: name.clone(),
            role: role.to_owned(),
            hash: new_hash,
        });
        self.save(&updated)?;
        *accounts = updated;
        Ok(())
    }

    /// Removes an account and rewrites the file; the last one cannot go (the
    /// file would no longer load).
    ///
    /// # Errors
    ///
    /// [`DemoUsersError::Refused`] for an unknown or the last account; file errors.
    pub fn remove(&self, name: &UserId) -> Result<(), DemoUsersError> {
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !accounts.iter().any(|a| &a.name == name) {
            return Err(DemoUsersError::Refused("no such account"));
        }
        if accounts.len() == 1 {
            return Err(DemoUsersError::Refused(
                "the last account cannot be removed; delete the file instead",
            ));
        }
        let updated: Vec<Account> = accounts
            .iter()
            .filter(|a| &a.name != name)
            .cloned()
            .collect();
        self.save(&updated)?;
        *accounts = updated;
        Ok(())
    }

    /// Every account's name and role.
    pub fn accounts(&self) -> Vec<(UserId, String)> {
        self.accounts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|a| (a.name.clone(), a.role.clone()))
            .collect()
    }

    /// The account names, for the admin page.
    pub fn names(&self) -> Vec<UserId> {
        self.refresh();
        self.accounts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|a| a.name.clone())
            .collect()
    }
}

fn check_password(password: &str) -> Result<(), DemoUsersError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(DemoUsersError::Refused(
            "the password needs at least 8 characters",
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(DemoUsersError::Refused(
            "the password is longer than 256 characters",
        ));
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<(), DemoUsersError> {
    let err = |what| {
        let path = path.to_owned();
        move |source| DemoUsersError::File { what, path, source }
    };
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(err("cannot create"))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err("cannot write"))
}

#[cfg(test)]
mod reload_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_running_server_follows_changes_made_by_another_process() {
        let dir = std::env::temp_dir().join(format!(
            "sessionary-demo-reload-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&dir).unwrap();
        let (served, fresh) = DemoUsers::load_or_create(&dir).unwrap();
        let alice = UserId::new(USER_NAME).unwrap();
        let old = &fresh[0].password;
        assert!(served.check(USER_NAME, old).is_some());
        // Another process (the CLI) changes the password and adds an account.
        let other = DemoUsers::load(&dir.join(DEMO_USERS_FILE)).unwrap();
        other.set_password(&alice, "a brand new password").unwrap();
        other
            .add(&UserId::new("carol").unwrap(), "user", "carol's password")
            .unwrap();
        assert!(
            served.check(USER_NAME, old).is_none(),
            "old password still accepted"
        );
        assert!(served.check(USER_NAME, "a brand new password").is_some());
        assert!(served.check("carol", "carol's password").is_some());
        other.remove(&alice).unwrap();
        assert!(served.check(USER_NAME, "a brand new password").is_none());
        // A broken file keeps what was loaded.
        fs::write(dir.join(DEMO_USERS_FILE), "garbage\n").unwrap();
        assert!(served.check("carol", "carol's password").is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_check_and_files_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let dir =
            std::env::temp_dir().join(format!("sessionary-demo-users-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let (users, fresh) = DemoUsers::load_or_create(&dir)?;
        assert_eq!(fresh.len(), 2);
        let alice = &fresh[0];
        assert_eq!(
            users.check("alice", &alice.password).map(|(_, r)| r),
            Some("user".to_owned())
        );
        assert!(users.check("alice", "wrong").is_none());
        assert!(users.check("nobody", &alice.password).is_none());
        // The second start reads the file and shows no passwords.
        let (again, none) = DemoUsers::load_or_create(&dir)?;
        assert!(none.is_empty());
        assert!(again.check("admin", &fresh[1].password).is_some());
        let text = fs::read_to_string(dir.join(DEMO_USERS_FILE))?;
        assert!(!text.contains(&alice.password), "only hashes are kept");
        // A changed password is kept in the file, and the old one is refused.
        let name = UserId::new("alice")?;
        assert!(matches!(
            again.set_password(&name, "short"),
            Err(DemoUsersError::Refused(_))
        ));
        again.set_password(&name, "a new passphrase")?;
        assert!(again.check("alice", &alice.password).is_none());
        let (reloaded, _) = DemoUsers::load_or_create(&dir)?;
        assert!(reloaded.check("alice", "a new passphrase").is_some());
        assert!(reloaded.check("admin", &fresh[1].password).is_some());
        fs::write(dir.join(DEMO_USERS_FILE), "alice user nothash\n")?;
        assert!(matches!(
            DemoUsers::load_or_create(&dir),
            Err(DemoUsersError::Malformed { .. })
        ));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
