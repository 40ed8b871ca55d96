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
use crate::con::Con;
use crate::target::Target;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

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
/// pub/sub is broadcast across the cluster): the publisher is a Cluster
/// connection, the subscriber listens on one seed node and, when that node
/// goes away, subscribes again on the next seed (reporting a miss).
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
    /// Connects to `url` (the forms of [`RedisStore::connect`](crate::RedisStore::connect))
    /// for the store whose keys start with `key_prefix`
    /// (the channel is `<key_prefix>events`). Must run inside a Tokio
    /// runtime: two tasks publish and subscribe until the fanout is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL, [`Error::Connect`] if Redis cannot
    /// be reached at first.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, Error> {
        let channel = format!("{key_prefix}events");
        let (mut publisher, seeds) = match Target::parse(url)? {
            Target::Standalone(url) => {
                let client = redis::Client::open(url).map_err(Error::Url)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(2));
                let publisher = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(Error::Connect)?;
                (Con::Direct(publisher), vec![client])
            }
            Target::Cluster(seeds) => {
                let clients = seeds
                    .iter()
                    .map(|s| redis::Client::open(s.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Error::Url)?;
                let publisher = crate::cluster::connect(seeds, Duration::from_secs(2)).await?;
                (Con::Cluster(publisher), clients)
            }
            Target::Sentinel { .. } => {
                return Err(Error::Url(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "Sentinel is not supported yet",
                ))));
            }
        };
        // The first subscription is made here, so events published after
        // `connect` returns are heard: on the first seed that answers.
        let mut seed = 0;
        let pubsub = loop {
            match subscribe(&seeds[seed], &channel).await {
                Ok(p) => break p,
                Err(e) if seed + 1 == seeds.len() => return Err(Error::Connect(e)),
                Err(_) => seed += 1,
            }
        };
        let (relay, mut queue) = Relay::new(QUEUE);

        let name = channel.clone();
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&name).arg(event.encode());
                let sent = publish(&mut publisher, &cmd).await;
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
                // Cluster: the next seed (the one heard last may be down).
                seed = (seed + 1) % seeds.len();
                if let Ok(p) = subscribe(&seeds[seed], &name).await {
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

/// Sends `PUBLISH`. On Cluster any node broadcasts it, so it goes to a
/// random node (not the channel's slot owner, which may be the node that is
/// down), up to three times.
async fn publish(publisher: &mut Con, cmd: &redis::Cmd) -> redis::RedisResult<()> {
    match publisher {
        Con::Cluster(c) => {
            let mut last = None;
            for _ in 0..3 {
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                match c.route_command(cmd, to).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| (redis::ErrorKind::IoError, "not sent").into()))
        }
        other => cmd.query_async::<i64>(other).await.map(drop),
    }
}

/// A pub/sub connection to `client`, subscribed to `channel`, within 2 s.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let go = async {
        let mut p = client.get_async_pubsub().await?;
        p.subscribe(channel).await?;
        Ok(p)
    };
    tokio::time::timeout(Duration::from_secs(2), go)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "subscription timed out",
            )))
        })
}

impl Fanout for RedisFanout {
    fn publish(&self, event: RemoteEvent) {
        self.relay.publish(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.relay.subscribe()
    }
}
