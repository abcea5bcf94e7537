//! The store itself: its connections to Redis (one server or a cluster), its scripts, and what
//! start-up found out about durable writes. The operations are `impl Store` blocks in the modules
//! beside this one, one per concern.

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    Cmd, Pipeline, ProtocolVersion, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use service_runtime::redis::RedisTarget;

use super::{durability::Durability, error::StoreError};
use crate::{cache::GrantCache, events::DEFAULT_MAXLEN, seal::Keyring};

/// One connection type for both modes. Both reconnect by themselves; every key an operation
/// touches together shares an `{install}` hash tag, so the same scripts run on both.
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

async fn connect_one(target: &RedisTarget, timeout: Duration) -> Result<Conn, redis::RedisError> {
    if !target.is_cluster() {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let client = target.client(ProtocolVersion::RESP2)?;
        return Ok(Conn::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ));
    }
    let client = target
        .cluster_builder()?
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .build()?;
    Ok(Conn::Cluster(client.get_async_connection().await?))
}

/// The Redis side of token-service.
#[derive(Clone)]
pub struct Store {
    pub(super) conn: Conn,
    /// A connection of its own for the writes that wait for durability (`WAITAOF`/`WAIT` block
    /// the connection they run on, and cover that connection's writes): refreshes are rare, the
    /// hot path never queues behind them.
    pub(super) durable_conn: Conn,
    pub(super) durability: Arc<Durability>,
    pub(super) keyring: Arc<Keyring>,
    pub(super) scripts: Arc<Scripts>,
    /// Every write of a grant or an org index drops its entry here before it returns; the
    /// tracking connection (`store::tracking`) drops the entries other clients change.
    pub(super) cache: Arc<GrantCache>,
    /// The lifecycle event stream; None on Redis Cluster (docs/design.md, "Events").
    pub(super) events: Option<EventLog>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keyring", &self.keyring)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// The Lua scripts (`store/*.lua`), called by their hash and loaded into Redis on first use.
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) fenced_write: Script,
    pub(super) mark_sending: Script,
    pub(super) settle: Script,
    pub(super) renew: Script,
    pub(super) compare_and_delete: Script,
    pub(super) reauthorize: Script,
    pub(super) read_events: Script,
    pub(super) budget_reserve: Script,
}

/// A script that changes an install, with the event appender (`store/event.lua`) in front.
fn changing(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("event.lua")))
}

/// Where the lifecycle events go: the stream and its approximate length. None on a cluster.
#[derive(Debug, Clone)]
pub(super) struct EventLog {
    pub(super) maxlen: u64,
    /// The server, for the watchers' own blocking connections.
    pub(super) target: RedisTarget,
    pub(super) timeout: Duration,
}

/// The grant cache's default size (`TOKEN_CACHE_MAX_INSTALLS` sets it in a service).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

impl Store {
    /// Connects to Redis (fails fast when it is unreachable) and finds out how durable a write
    /// is there (`store::durability`). `min_replicas` is `TOKEN_REDIS_MIN_REPLICAS`.
    pub async fn connect(
        target: &RedisTarget,
        keyring: Arc<Keyring>,
        timeout: Duration,
        min_replicas: u32,
    ) -> Result<Self, redis::RedisError> {
        let conn = connect_one(target, timeout).await?;
        let mut durable_conn = if target.is_cluster() {
            // The cluster client routes each command by its key; WAITAOF/WAIT have none.
            conn.clone()
        } else {
            connect_one(target, timeout).await?
        };
        let durability = Durability::probe(
            &mut durable_conn,
            target.is_cluster(),
            min_replicas,
            timeout,
        )
        .await;
        Ok(Store {
            conn,
            durable_conn,
            durability: Arc::new(durability),
            keyring,
            cache: Arc::new(GrantCache::new(DEFAULT_CACHE_CAPACITY)),
            // One install's keys share a slot on a cluster; the global stream lives on another,
            // so no script could write both: no events rather than events that may lie.
            events: (!target.is_cluster()).then(|| EventLog {
                maxlen: DEFAULT_MAXLEN,
                target: target.clone(),
                timeout,
            }),
            scripts: Arc::new(Scripts {
                create: changing(include_str!("create.lua")),
                fenced_write: changing(include_str!("fenced_write.lua")),
                mark_sending: Script::new(include_str!("mark_sending.lua")),
                settle: changing(include_str!("settle.lua")),
                renew: Script::new(include_str!("renew.lua")),
                compare_and_delete: changing(include_str!("compare_and_delete.lua")),
                reauthorize: changing(include_str!("reauthorize.lua")),
                read_events: Script::new(include_str!("read_events.lua")),
                budget_reserve: Script::new(include_str!("budget_reserve.lua")),
            }),
        })
    }

    /// The same store trimming the event stream to about `maxlen` events
    /// (`TOKEN_EVENTS_MAXLEN`).
    pub fn with_events_maxlen(self, maxlen: u64) -> Self {
        let events = self.events.map(|e| EventLog { maxlen, ..e });
        Store { events, ..self }
    }

    /// False on Redis Cluster, where no events are written (docs/design.md, "Events").
    pub fn events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// The same store with `cache` as its grant cache (start-up sizes it from settings).
    pub fn with_cache(self, cache: Arc<GrantCache>) -> Self {
        Store { cache, ..self }
    }

    /// The grant cache this store keeps coherent with its own writes.
    pub fn cache(&self) -> &Arc<GrantCache> {
        &self.cache
    }

    /// What start-up found out about durable writes.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
