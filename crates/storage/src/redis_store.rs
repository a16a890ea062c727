use std::time::Duration;

use async_trait::async_trait;
use oidc_core::{EphemeralError, EphemeralStore};
use redis::{
    Client, FromRedisValue, RedisResult, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};

/// [`EphemeralStore`] on Redis (a single server or a Redis Cluster), shared by all nodes.
///
/// Every key is prefixed, so one Redis can serve several deployments (or test runs).
#[derive(Clone)]
pub struct RedisEphemeralStore {
    conn: Connection,
    prefix: String,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisEphemeralStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.conn {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisEphemeralStore").field("kind", &kind).field("prefix", &self.prefix).finish()
    }
}

/// Connecting to Redis failed.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// INCRBY that sets the expiry only when it creates the counter: a fixed window (one key only,
/// so it runs on Redis Cluster too).
const INCREMENT: &str = r"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value";

fn unavailable(e: redis::RedisError) -> EphemeralError {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType || e.to_string().contains("not an integer") {
        EphemeralError::WrongType
    } else {
        EphemeralError::Unavailable(Box::new(e))
    }
}

fn millis(ttl: Duration) -> u64 {
    // Redis refuses a zero expiry; the shortest it keeps is one millisecond.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisEphemeralStore {
    /// Connects to `url` (`redis://` or `rediss://`). With `cluster`, `url` may list several
    /// seed nodes separated by commas. Connecting and each command time out after `timeout`
    /// (a hung Redis costs a request that long, not forever); a dropped connection is
    /// re-established in the background, and commands fail fast meanwhile.
    pub async fn connect(url: &str, cluster: bool, prefix: &str, timeout: Duration) -> Result<Self, RedisError> {
        let conn = if cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = ClusterClient::builder(nodes).connection_timeout(timeout).response_timeout(timeout).build()?;
            Connection::Cluster(client.get_async_connection().await?)
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            Connection::Single(ConnectionManager::new_with_config(Client::open(url)?, config).await?)
        };
        Ok(Self { conn, prefix: prefix.to_owned() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match &self.conn {
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await,
            Connection::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

#[async_trait]
impl EphemeralStore for RedisEphemeralStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        let cmd = redis::cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl)).to_owned();
        self.query::<()>(&cmd).await.map_err(unavailable)
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, EphemeralError> {
        let cmd = redis::cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl)).arg("NX").to_owned();
        let stored: Option<String> = self.query(&cmd).await.map_err(unavailable)?;
        Ok(stored.is_some())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.query(&redis::cmd("GET").arg(self.key(key)).to_owned()).await.map_err(unavailable)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        // GETDEL (Redis ≥ 6.2) is one atomic command: two nodes can never both get the value.
        self.query(&redis::cmd("GETDEL").arg(self.key(key)).to_owned()).await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<bool, EphemeralError> {
        let removed: i64 = self.query(&redis::cmd("DEL").arg(self.key(key)).to_owned()).await.map_err(unavailable)?;
        Ok(removed > 0)
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, EphemeralError> {
        let script = Script::new(INCREMENT);
        let mut invocation = script.key(self.key(key));
        invocation.arg(by).arg(millis(ttl));
        let result = match &self.conn {
            Connection::Single(c) => invocation.invoke_async(&mut c.clone()).await,
            Connection::Cluster(c) => invocation.invoke_async(&mut c.clone()).await,
        };
        result.map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop).map_err(unavailable)
    }
}
