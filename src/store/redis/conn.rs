//! The connection to Redis — one server, or a Redis Cluster — and the ways the store
//! sends commands over it: one call within a bound, several single-slot requests at
//! once, and script calls that load the script again after Redis lost it.
//!
//! Every request the store makes stays within one slot (one partition's hash tag), so
//! the same code runs on both: a cluster connection routes each request to the node of
//! its slot, a single connection carries the concurrent requests back to back, as one
//! pipeline would.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value};

use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// A live connection: to one Redis, or to every node of a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections come from. Lazy either way: the service starts, and counts in
/// memory, while Redis is away.
#[derive(Clone)]
pub(super) enum Connector {
    /// Reconnects by itself.
    Single(ConnectionManager),
    /// Connected at first use; the cluster connection then follows the topology, and
    /// is replaced by a new one after a call lost a node (see [`Connector::forget`]).
    Cluster {
        client: Box<ClusterClient>,
        conn: Arc<tokio::sync::Mutex<Option<ClusterConnection>>>,
    },
}

impl Connector {
    /// One Redis at `url`.
    pub fn single(url: &str) -> RedisResult<Connector> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // One attempt per call: the flusher's own back-off paces the retries.
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(Client::open(url)?, config)?;
        Ok(Connector::Single(manager))
    }

    /// A Redis Cluster reached through any of `seeds`.
    pub fn cluster(seeds: &[&str]) -> RedisResult<Connector> {
        let client = ClusterClientBuilder::new(seeds.iter().copied())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()?;
        Ok(Connector::Cluster {
            client: Box::new(client),
            conn: Arc::default(),
        })
    }

    /// A connection, connecting to the cluster first if need be.
    pub async fn get(&self) -> RedisResult<Conn> {
        match self {
            Connector::Single(manager) => Ok(Conn::Single(manager.clone())),
            Connector::Cluster { client, conn } => {
                let mut slot = conn.lock().await;
                if let Some(c) = slot.as_ref() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let c = client.get_async_connection().await?;
                *slot = Some(c.clone());
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// After `error` (or a call that timed out: `None`), drops a cluster connection
    /// that may hold a dead node's socket, so the next call connects afresh through
    /// the seeds. A node killed and restarted was seen to time out every later request
    /// on the old cluster connection. One Redis: nothing to do, the manager reconnects.
    pub async fn forget_after(&self, error: Option<&RedisError>) {
        let lost = error.is_none_or(|e| {
            e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_cluster_error()
        });
        if let (true, Connector::Cluster { conn, .. }) = (lost, self) {
            conn.lock().await.take();
        }
    }
}

/// A command or a pipeline whose keys share one slot.
pub(super) trait Request: Sync {
    /// Sends it on `conn` and reads the reply.
    fn send<T: FromRedisValue + Send>(&self, conn: Conn) -> impl Future<Output = RedisResult<T>> + Send;
}

impl Request for Cmd {
    async fn send<T: FromRedisValue + Send>(&self, mut conn: Conn) -> RedisResult<T> {
        self.query_async(&mut conn).await
    }
}

impl Request for Pipeline {
    async fn send<T: FromRedisValue + Send>(&self, mut conn: Conn) -> RedisResult<T> {
        self.query_async(&mut conn).await
    }
}

/// Sends every request at once; each one's reply, in order.
pub(super) async fn send_all<T: FromRedisValue + Send, R: Request>(conn: &Conn, requests: &[R]) -> Vec<RedisResult<T>> {
    join_all(requests.iter().map(|r| r.send(conn.clone()))).await
}

/// One `script` call (an `EVALSHA`) and its integer answer. When Redis restarted and
/// lost its script cache, the script is loaded (on every node of a cluster) and the
/// call sent again: a call that answered `NOSCRIPT` did not run.
pub(super) async fn run_script(conn: Conn, script: &Script, call: &Cmd) -> RedisResult<i64> {
    match call.send(conn.clone()).await {
        Err(e) if is_noscript(&e) => {
            script.load_async(&mut conn.clone()).await?;
            call.send(conn).await
        }
        other => other,
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
