//! [`RedisFanout`]: events between the nodes that share a Redis store, over
//! pub/sub.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sessionary_core::Timestamp;
use sessionary_core::fanout::{Fanout, Relay, RemoteEvent};
use tokio::sync::broadcast;

use crate::Error;

/// Events published but not yet sent before new ones are dropped (with a warning).
const QUEUE: usize = 4096;

/// How long the subscriber waits before connecting again.
const RETRY: Duration = Duration::from_millis(100);

/// A [`Fanout`] over Redis pub/sub on the channel `<key prefix>events`: each
/// node publishes from a connection of its own (reconnecting by itself) and
/// subscribes on another. Pub/sub is fire-and-forget: messages published while
/// a subscriber was disconnected are lost, so after each reconnection the
/// subscriber reports [`RemoteEvent::missed`] and subscribers re-read what
/// they watch. In Cluster, `PUBLISH` reaches every node's subscribers (classic
/// pub/sub is broadcast across the cluster).
///
/// Publishing never waits: events queue (4096) for a background task; when
/// Redis is away they are dropped with a warning.
pub struct RedisFanout {
    relay: Relay,
    channel: String,
}

impl fmt::Debug for RedisFanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFanout")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RedisFanout {
    /// Connects to `url` for the store whose keys start with `key_prefix`
    /// (the channel is `<key_prefix>events`). Must run inside a Tokio
    /// runtime: two tasks publish and subscribe until the fanout is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL, [`Error::Connect`] if Redis cannot
    /// be reached at first.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(Error::Url)?;
        let channel = format!("{key_prefix}events");
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2));
        let mut publisher = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(Error::Connect)?;
        // The first subscription is made here, so events published after
        // `connect` returns are heard.
        let mut pubsub = client.get_async_pubsub().await.map_err(Error::Connect)?;
        pubsub.subscribe(&channel).await.map_err(Error::Connect)?;
        let (relay, mut queue) = Relay::new(QUEUE);

        let name = channel.clone();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(&name)
                    .arg(event.encode())
                    .query_async(&mut publisher)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "a session event could not be sent to the other nodes");
                }
            }
        });

        let weak = relay.hub();
        let name = channel.clone();
        tokio::spawn(async move {
            let mut current = Some(pubsub);
            loop {
                if let Some(pubsub) = current.take() {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(hub) = weak.upgrade() else { return };
                        match RemoteEvent::decode(msg.get_payload_bytes()) {
                            Some(event) => {
                                let _ = hub.send(event);
                            }
                            None => tracing::warn!(
                                channel = %name,
                                "ignored a message that is not a session event"
                            ),
                        }
                    }
                    tracing::warn!(channel = %name, "session event subscription lost; reconnecting");
                }
                let Some(hub) = weak.upgrade() else { return };
                drop(hub);
                tokio::time::sleep(RETRY).await;
                let again = async {
                    let mut p = client.get_async_pubsub().await?;
                    p.subscribe(&name).await?;
                    Ok::<_, redis::RedisError>(p)
                };
                if let Ok(p) = again.await {
                    // Whatever was published while away is gone.
                    if let Some(hub) = weak.upgrade() {
                        let _ = hub.send(RemoteEvent::missed(Timestamp(0)));
                    }
                    current = Some(p);
                }
            }
        });
        Ok(Self { relay, channel })
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Fanout for RedisFanout {
    fn publish(&self, event: RemoteEvent) {
        self.relay.publish(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.relay.subscribe()
    }
}
