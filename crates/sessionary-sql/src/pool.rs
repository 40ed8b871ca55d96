//! A fixed set of long-lived SQLite connections.
//!
//! sqlx's `Pool` spawns a task to take back every connection it lends and arms
//! a timer for every wait; on the hot path (one indexed read) that costs about
//! three times the query itself. An embedded database needs none of what it buys
//! (no network to lose, no connections to grow or shrink), so the store keeps
//! its connections here: each behind a fair async mutex, opened once, lent
//! without a task or a timer when one is free.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sessionary_core::StoreError;
use sessionary_core::store::StoreResult;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::error::from_sqlx;

/// Connections, all opened with the same options.
#[derive(Debug)]
pub(crate) struct Conns {
    slots: Box<[Mutex<Option<SqliteConnection>>]>,
    next: AtomicUsize,
    closed: AtomicBool,
    /// How long an operation waits for a busy connection before giving up.
    wait: Duration,
}

/// A connection lent by [`Conns::acquire`]; others wait until it is dropped.
pub(crate) type Conn<'a> = MappedMutexGuard<'a, SqliteConnection>;

fn closed() -> StoreError {
    StoreError::unavailable(sqlx::Error::PoolClosed)
}

impl Conns {
    /// Opens `n` connections (at least one).
    pub(crate) async fn open(
        options: &SqliteConnectOptions,
        n: usize,
        wait: Duration,
    ) -> StoreResult<Self> {
        let mut slots = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let conn = SqliteConnection::connect_with(options)
                .await
                .map_err(from_sqlx)?;
            slots.push(Mutex::new(Some(conn)));
        }
        Ok(Self {
            slots: slots.into_boxed_slice(),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            wait,
        })
    }

    /// Number of connections.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A free connection if there is one, else the next in turn when it frees up
    /// (waiters are served first come, first served).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] once closed, or after waiting too long.
    pub(crate) async fn acquire(&self) -> StoreResult<Conn<'_>> {
        let n = self.slots.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let guard = match free {
            Some(g) => g,
            None => tokio::time::timeout(self.wait, self.slots[start].lock())
                .await
                .map_err(|_| StoreError::unavailable(sqlx::Error::PoolTimedOut))?,
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        // Empty only once closed.
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| closed())
    }

    /// Whether [`Self::take_all`] or [`Self::close`] has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Refuses every later [`Self::acquire`], waits for the operations holding
    /// connections to finish, and hands the connections over (for a last write
    /// before [`close_conn`]).
    pub(crate) async fn take_all(&self) -> Vec<SqliteConnection> {
        self.closed.store(true, Ordering::Release);
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &*self.slots {
            if let Some(conn) = slot.lock().await.take() {
                out.push(conn);
            }
        }
        out
    }

    /// Closes every connection, after the operations holding them finish.
    /// Later [`Self::acquire`]s fail.
    pub(crate) async fn close(&self) {
        for conn in self.take_all().await {
            close_conn(conn).await;
        }
    }
}

/// Closes a connection taken by [`Conns::take_all`].
pub(crate) async fn close_conn(conn: SqliteConnection) {
    // Closing checkpoints the WAL; a failure leaves the WAL for the next open
    // to replay, which loses nothing.
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing a SQLite connection failed");
    }
}
