//! [`RedisFanout`]: events between the nodes that share a Redis store, over
//! pub/sub.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use sessionary_core::Timestamp;
use sessionary_core::fanout::{Fanout, Relay, RemoteEvent};
use tokio::sync::{broadcast, watch};

use crate::Error;
use crate::con::Con;
use crate::sentinel::SentinelCon;
use crate::target::Target;

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
///
/// With a `redis+sentinel://` URL both ends follow the primary: the publisher
/// goes through the same kind of connection as [`RedisStore`](crate::RedisStore),
/// and the subscriber subscribes again on the new primary after a failover
/// (and reports [`RemoteEvent::missed`]).
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
        let channel = format!("{key_prefix}events");
        let timeout = Duration::from_secs(2);
        let (mut publisher, source) = match Target::parse(url)? {
            Target::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => {
                let con =
                    SentinelCon::connect(&sentinels, &master, db, &credentials, timeout).await?;
                (Con::Sentinel(con.clone()), Source::Sentinel(con))
            }
            _ => {
                let client = redis::Client::open(url).map_err(Error::Url)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                let publisher = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(Error::Connect)?;
                (Con::Direct(publisher), Source::Direct(client))
            }
        };
        // The first subscription is made here, so events published after
        // `connect` returns are heard.
        let (pubsub, mut on) = source.subscribe(&channel).await.map_err(Error::Connect)?;
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
        let mut changes = source.changes();
        tokio::spawn(async move {
            let mut current = Some(pubsub);
            loop {
                if let Some(pubsub) = current.take() {
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            msg = messages.next() => msg,
                            () = source.moved(&mut changes, on) => None,
                        };
                        let Some(msg) = msg else { break };
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
                if let Ok((p, epoch)) = source.subscribe(&name).await {
                    // Whatever was published while away is gone.
                    if let Some(hub) = weak.upgrade() {
                        let _ = hub.send(RemoteEvent::missed(Timestamp(0)));
                    }
                    current = Some(p);
                    on = epoch;
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

/// Where the subscriber connects.
enum Source {
    Direct(redis::Client),
    Sentinel(SentinelCon),
}

impl Source {
    /// A subscription to `channel`, and the epoch of the primary it is on.
    async fn subscribe(&self, channel: &str) -> redis::RedisResult<(PubSub, u64)> {
        let (client, epoch) = match self {
            Source::Direct(c) => (c.clone(), 0),
            Source::Sentinel(con) => {
                let (epoch, _, client) = con.primary().await?;
                (client, epoch)
            }
        };
        let mut p = client.get_async_pubsub().await?;
        p.subscribe(channel).await?;
        Ok((p, epoch))
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Source::Direct(_) => None,
            Source::Sentinel(con) => Some(con.changes()),
        }
    }

    /// Returns once the primary is no longer the one of `epoch` (never for a
    /// standalone server).
    async fn moved(&self, changes: &mut Option<watch::Receiver<u64>>, epoch: u64) {
        if let (Source::Sentinel(con), Some(rx)) = (self, changes.as_mut()) {
            loop {
                if con.live_epoch() != Some(epoch) {
                    return;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await;
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
