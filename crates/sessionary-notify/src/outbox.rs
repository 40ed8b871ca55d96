//! [`FileOutbox`]: alerts appended to a JSON Lines file (the default notifier).

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sessionary_core::UserId;

use crate::alert::Alert;
use crate::error::{NotifyError, Result};
use crate::notifier::Notifier;

/// Writes each alert as one JSON line to a file, for a person (or a mail
/// relay) to pick up: the default [`Notifier`], and the demo's mailbox.
///
/// The folder is created if missing and the file is owner-only (0600) on
/// Unix, since alerts name IP addresses. Appends are serialised in this
/// process, so lines never interleave.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// use sessionary_notify::FileOutbox;
///
/// let dir = std::env::temp_dir().join(format!("outbox-doc-{}", std::process::id()));
/// let outbox = FileOutbox::new(dir.join("outbox.jsonl"));
/// assert!(outbox.read_all().await?.is_empty()); // no file yet: no alerts
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileOutbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Held by the blocking task that appends (never across an `.await`).
    lock: std::sync::Mutex<()>,
}

impl FileOutbox {
    /// An outbox at `path` (created at the first alert).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.into(),
                lock: std::sync::Mutex::new(()),
            }),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every alert in the file, newest first. A missing file is an empty
    /// outbox; lines that are not alerts are skipped (and logged).
    ///
    /// # Errors
    ///
    /// [`NotifyError::Outbox`] if the file exists but cannot be read.
    pub async fn read_all(&self) -> Result<Vec<Alert>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.read())
            .await
            .map_err(|e| NotifyError::Outbox {
                what: "read",
                path: self.inner.path.clone(),
                source: std::io::Error::other(e),
            })?
    }

    /// The alerts for `user`, newest first.
    ///
    /// # Errors
    ///
    /// As [`Self::read_all`].
    pub async fn read_for(&self, user: &UserId) -> Result<Vec<Alert>> {
        let mut all = self.read_all().await?;
        all.retain(|a| &a.user == user);
        Ok(all)
    }
}

impl Inner {
    fn err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> NotifyError + '_ {
        move |source| NotifyError::Outbox {
            what,
            path: self.path.clone(),
            source,
        }
    }

    fn append(&self, line: &[u8]) -> Result<()> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir).map_err(self.err("create the folder of"))?;
        }
        let mut o = fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&self.path).map_err(self.err("create"))?;
        // One write of the whole line: with O_APPEND, other writers of the
        // file (another process) cannot land in the middle of it.
        f.write_all(line)
            .and_then(|()| f.sync_data())
            .map_err(self.err("append to"))
    }

    fn read(&self) -> Result<Vec<Alert>> {
        let f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("read")(e)),
        };
        let mut out = Vec::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(self.err("read"))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Alert>(&line) {
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!(
                    file = %self.path.display(),
                    line = n + 1,
                    error = %e,
                    "outbox line is not an alert; skipped"
                ),
            }
        }
        out.reverse();
        Ok(out)
    }
}

#[async_trait]
impl Notifier for FileOutbox {
    async fn send(&self, alert: &Alert) -> Result<()> {
        let mut line = serde_json::to_vec(alert).map_err(NotifyError::Encode)?;
        line.push(b'\n');
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.append(&line))
            .await
            .map_err(|e| NotifyError::Outbox {
                what: "append to",
                path: self.inner.path.clone(),
                source: std::io::Error::other(e),
            })?
    }
}
