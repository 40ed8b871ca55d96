//! The connection a [`RedisStore`](crate::RedisStore) talks through, whatever
//! the deployment: one enum, so the store's code does not depend on the mode.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A cheap-to-clone handle to the server(s); clones share the connection.
#[derive(Clone)]
pub(crate) enum Con {
    /// Standalone: one multiplexed connection that reconnects by itself.
    Direct(ConnectionManager),
    /// Cluster: redis-rs routes each command by its first key's slot,
    /// follows `MOVED`/`ASK` and reconnects by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Direct(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Direct(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Direct(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}
