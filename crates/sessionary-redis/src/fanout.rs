//! [`RedisFanout`]: events between the nodes that share a Redis store, over
//! pub/sub.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use sessionary_core::Timestamp;
use sessionary_core::fanout::{Fanout, Relay, RemoteEvent};
use tokio::sync::{broadcast, watch};

use crate::con::Con;
use crate::sentinel::SentinelCon;
use crate::target::Target;
use crate::{Error, RedisOptions};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// goes away, subscribes again on the next seed (reporting a miss). Behind
/// Sentinel, both follow the primary across failovers.
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
    /// Connects to `url` (the forms of [`RedisStore::connect`](crate::RedisStore::connect)) for the store whose keys start with `key_prefix`
    /// (the channel is `<key_prefix>events`). Must run inside a Tokio
    /// runtime: two tasks publish and subscribe until the fanout is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL, [`Error::Connect`] if Redis cannot
    /// be reached at first.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, Error> {
        Self::connect_with_options(url, &RedisOptions::new().with_key_prefix(key_prefix)).await
    }

    /// As [`Self::connect`], for the store of `options`: its key prefix (the
    /// channel is `<key prefix>events`) and its TLS settings
    /// ([`RedisOptions::with_tls_ca`], [`RedisOptions::with_tls_client_identity`]).
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL or TLS settings
    /// [`RedisStore::connect`](crate::RedisStore::connect) would refuse,
    /// [`Error::Connect`] if Redis cannot be reached at first.
    pub async fn connect_with_options(url: &str, options: &RedisOptions) -> Result<Self, Error> {
        let channel = format!("{}events", options.key_prefix());
        let timeout = Duration::from_secs(2);
        let target = Target::parse(url)?;
        options.check_tls(&target)?;
        let tls = &options.tls;
        let (mut publisher, source) = match target {
            Target::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => {
                let con = SentinelCon::connect(&sentinels, &master, db, &credentials, timeout, tls)
                    .await?;
                (Con::Sentinel(con.clone()), Source::Sentinel(con))
            }
            Target::Cluster(seeds) => {
                let clients = seeds
                    .iter()
                    .map(|s| tls.client(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Error::Url)?;
                let publisher = crate::cluster::connect(seeds, timeout, tls).await?;
                (
                    Con::Cluster(publisher),
                    Source::Seeds {
                        clients,
                        next: AtomicUsize::new(0),
                    },
                )
            }
            Target::Standalone(url) => {
                let client = tls.client(&url).map_err(Error::Url)?;
                crate::probe_tls(&client, timeout).await?;
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
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&name).arg(event.encode());
                if let Err(e) = publish(&mut publisher, &cmd).await {
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
    /// One server.
    Direct(redis::Client),
    /// The seed nodes of a Cluster: any one hears every `PUBLISH`; the next
    /// subscription starts at the seed after the last one that answered (the
    /// one heard last may be the one that is down).
    Seeds {
        clients: Vec<redis::Client>,
        next: AtomicUsize,
    },
    /// The primary the sentinels name.
    Sentinel(SentinelCon),
}

/// A pub/sub connection to `client`, subscribed to `channel`, within 2 s.
async fn subscribe_on(client: &redis::Client, channel: &str) -> redis::RedisResult<PubSub> {
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

impl Source {
    /// A subscription to `channel`, and the epoch of the primary it is on.
    async fn subscribe(&self, channel: &str) -> redis::RedisResult<(PubSub, u64)> {
        match self {
            Source::Direct(c) => Ok((subscribe_on(c, channel).await?, 0)),
            Source::Seeds { clients, next } => {
                let start = next.load(Ordering::Relaxed);
                let mut last = None;
                for k in 0..clients.len() {
                    let i = (start + k) % clients.len();
                    match subscribe_on(&clients[i], channel).await {
                        Ok(p) => {
                            next.store((i + 1) % clients.len(), Ordering::Relaxed);
                            return Ok((p, 0));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| (redis::ErrorKind::IoError, "no seed node").into()))
            }
            Source::Sentinel(con) => {
                let (epoch, _, client) = con.primary().await?;
                Ok((subscribe_on(&client, channel).await?, epoch))
            }
        }
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Source::Direct(_) | Source::Seeds { .. } => None,
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
