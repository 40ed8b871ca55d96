//! [`PgFanout`]: events between the nodes that share a PostgreSQL store,
//! over `LISTEN/NOTIFY`.

use std::fmt;
use std::time::Duration;

use sessionary_core::fanout::{Fanout, Relay, RemoteEvent};
use sessionary_core::{StoreError, Timestamp};
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::broadcast;

use crate::error::from_sqlx;

/// The default channel.
pub const DEFAULT_CHANNEL: &str = "sessionary_events";

/// Events published but not yet sent before new ones are dropped (with a warning).
const QUEUE: usize = 4096;

/// How long the listener waits before connecting again after an error.
const RETRY: Duration = Duration::from_millis(200);

/// A [`Fanout`] over PostgreSQL `LISTEN/NOTIFY` on one channel: each node
/// publishes with `pg_notify` from a connection of its own and listens on
/// another ([`sqlx::postgres::PgListener`], which reconnects by itself).
/// Notifications sent while a listener was disconnected are lost: the
/// listener then reports [`RemoteEvent::missed`], so subscribers re-read what
/// they watch. Delivery is in commit order per sender, typically within a
/// millisecond or two on one network.
///
/// Publishing never waits: events queue (4096) for a background task; when
/// PostgreSQL is down they are dropped with a warning, and the other nodes,
/// whose listeners lost their connection too, report a miss when they are back.
pub struct PgFanout {
    relay: Relay,
    channel: String,
}

impl fmt::Debug for PgFanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFanout")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PgFanout {
    /// Connects to `url` and listens on `channel` (letters, digits and `_`,
    /// at most 63 bytes; [`DEFAULT_CHANNEL`] unless nodes of several
    /// deployments share one database). Must run inside a Tokio runtime: two
    /// tasks publish and listen until the fanout is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if PostgreSQL cannot be reached;
    /// [`StoreError::Backend`] for an invalid channel name.
    pub async fn connect(url: &str, channel: &str) -> Result<Self, StoreError> {
        if channel.is_empty()
            || channel.len() > 63
            || !channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StoreError::backend(std::io::Error::other(
                "the fanout channel must be 1 to 63 letters, digits or `_`",
            )));
        }
        // Two connections: the listener keeps one, the sender uses the other.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(from_sqlx)?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(from_sqlx)?;
        listener.listen(channel).await.map_err(from_sqlx)?;
        let (relay, mut queue) = Relay::new(QUEUE);

        // Sends: one statement per event, from the pool's connection.
        let name = channel.to_owned();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                let payload = String::from_utf8(event.encode()).unwrap_or_default();
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&name)
                    .bind(&payload)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "a session event could not be sent to the other nodes");
                }
            }
        });

        // Receives, until nobody holds the fanout any more.
        let weak = relay.hub();
        tokio::spawn(async move {
            loop {
                let received = listener.try_recv().await;
                let Some(hub) = weak.upgrade() else { return };
                match received {
                    Ok(Some(n)) => match RemoteEvent::decode(n.payload().as_bytes()) {
                        Some(event) => {
                            let _ = hub.send(event);
                        }
                        None => tracing::warn!(
                            channel = n.channel(),
                            "ignored a notification that is not a session event"
                        ),
                    },
                    // The connection was lost (and is made again on the next
                    // call): whatever was sent meanwhile is gone.
                    Ok(None) => {
                        let _ = hub.send(RemoteEvent::missed(Timestamp(0)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "session event listener failed; retrying");
                        drop(hub);
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        });
        Ok(Self {
            relay,
            channel: channel.to_owned(),
        })
    }
}

impl Fanout for PgFanout {
    fn publish(&self, event: RemoteEvent) {
        self.relay.publish(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.relay.subscribe()
    }
}
