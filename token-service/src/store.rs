//! Grants in Redis: sealed records, the refresh lease and the fenced writes (Lua scripts in
//! `store/*.lua`), the indexes, and the durability barrier (`store::durability`).
//!
//! Every key, who writes it and under which fence is listed in docs/design.md ("Redis keys").
//! Every key of one install shares the `{install_id}` hash tag, so the scripts that touch a grant
//! and its lease together stay on one Redis Cluster slot; the indexes are separate keys written
//! by separate commands, and every reader tolerates an index entry that lags its grant.

pub mod durability;
pub mod tracking;

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    AsyncCommands, Cmd, Pipeline, ProtocolVersion, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};

use crate::{
    cache::GrantCache,
    events::{DEFAULT_MAXLEN, EVENTS_KEY, EventId, EventKind, InstallEvent, NewEvent},
    grant::{Grant, InstallId, Org, OrgId, Status, UnixMillis},
    seal::{Keyring, OpenError},
};

use self::durability::Durability;

/// A grant and the generation it was read at (the fence for the next write).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub generation: u64,
    pub grant: Grant,
    /// False when sealed with an older key: the next write re-seals it with the primary key.
    pub sealed_with_primary: bool,
    /// Set while a refresh token of this grant may be at Snyk with its answer not yet stored.
    pub sending: Option<SendingMark>,
}

/// "A refresh token of this install went to Snyk and its outcome is not stored yet": written by
/// the lease holder right before each send, cleared only by [`Store::settle`] with the same
/// mark. Names the replica (process) that sent, so only that replica ever presents the token
/// again. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingMark {
    /// The sending process (random per start).
    pub replica: String,
    /// The lease owner token of the flight that sent.
    pub flight: String,
    /// When the last request went out.
    pub at: UnixMillis,
}

impl SendingMark {
    fn encode(&self) -> String {
        format!("{}/{}/{}", self.replica, self.flight, self.at)
    }

    fn parse(s: &str) -> Option<SendingMark> {
        let mut parts = s.splitn(3, '/');
        Some(SendingMark {
            replica: parts.next()?.to_owned(),
            flight: parts.next()?.to_owned(),
            at: parts.next()?.parse().ok()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("stored record of install {install} cannot be opened: {source}")]
    Unreadable {
        install: InstallId,
        #[source]
        source: OpenError,
    },
    #[error("stored record of install {install} is not valid: {reason}")]
    Corrupt { install: InstallId, reason: String },
    #[error("install id {0} is already in use")]
    InstallIdTaken(InstallId),
    /// The event stream answered something that is not a stream entry.
    #[error("the event stream is not readable: {0}")]
    BadEventStream(String),
    /// A write that waits for durability did not get it in time (see `store::durability`).
    #[error("redis did not confirm the write as durable: {0}")]
    NotDurable(String),
}

/// The result of a fenced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Written; the record is now at this generation.
    Written(u64),
    /// Not written: the record is no longer at the expected generation (or was deleted).
    Stale,
    /// Not written: this writer does not hold the refresh lease.
    NotLeaseHolder,
}

/// The result of [`Store::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Stored at this generation; the "sending" mark is gone.
    Written(u64),
    /// Not stored: the mark is not ours any more (the install was deleted or replaced).
    Orphaned,
}

/// The result of [`Store::reauthorize`].
#[derive(Debug, Clone)]
pub struct Reauthorized {
    /// The grant the new one replaced (its refresh token is the one to revoke).
    pub old: Grant,
    /// The new grant, as stored.
    pub grant: Grant,
    pub generation: u64,
}

/// The result of [`Store::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The grant and the lease are gone.
    Done,
    /// Nothing deleted: the lease is not ours.
    NotLeaseHolder,
    /// Nothing deleted: the grant moved past the generation read (a reconnect or a late
    /// refresh): read it again and revoke its newer refresh token first.
    Moved,
}

/// Entries of the event stream after a cursor, with the stream's trim state read in the same
/// step (`store/read_events.lua`).
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The oldest entry still in the stream ("0-0": none).
    pub oldest: EventId,
    /// The newest entry ever appended ("0-0": none).
    pub last_generated: EventId,
    pub events: Vec<InstallEvent>,
    /// The last entry read, also when it was not an event this version understands.
    pub last_read: Option<EventId>,
    /// How many entries were read (events and entries skipped).
    pub read: usize,
}

/// Where the lifecycle events go: the stream and its approximate length. None on a cluster.
#[derive(Debug, Clone)]
struct EventLog {
    maxlen: u64,
    /// The server, for the watchers' own blocking connections.
    target: RedisTarget,
    timeout: Duration,
}

/// A watcher's own connection, for the blocking `XREAD` that waits for new events: blocking
/// the shared, multiplexed connection would stall every other command on it. Dropped with its
/// watcher.
pub struct EventWaiter {
    conn: redis::aio::MultiplexedConnection,
    block: Duration,
}

impl fmt::Debug for EventWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWaiter")
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl EventWaiter {
    /// Returns when an entry after `cursor` exists, or after the block time.
    pub async fn wait_after(&mut self, cursor: EventId) -> Result<(), StoreError> {
        let _: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(self.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(EVENTS_KEY)
            .arg(cursor.to_string())
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// Where Redis is: one server (`REDIS_URL`) or a cluster (`REDIS_CLUSTER_URLS`), with TLS and
/// credentials; printed without its password.
pub use service_runtime::redis::RedisTarget;

/// One connection type for both modes. Both reconnect by themselves; every key an operation
/// touches together shares an `{install}` hash tag, so the same scripts run on both.
#[derive(Clone)]
enum Conn {
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

/// The Redis side of token-service.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    /// A connection of its own for the writes that wait for durability (`WAITAOF`/`WAIT` block
    /// the connection they run on, and cover that connection's writes): refreshes are rare, the
    /// hot path never queues behind them.
    durable_conn: Conn,
    durability: Arc<Durability>,
    keyring: Arc<Keyring>,
    scripts: Arc<Scripts>,
    /// Every write of a grant or an org index drops its entry here before it returns; the
    /// tracking connection (`store::tracking`) drops the entries other clients change.
    cache: Arc<GrantCache>,
    /// The lifecycle event stream; None on Redis Cluster (docs/design.md, "Events").
    events: Option<EventLog>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keyring", &self.keyring)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    create: Script,
    fenced_write: Script,
    mark_sending: Script,
    settle: Script,
    renew: Script,
    compare_and_delete: Script,
    reauthorize: Script,
    read_events: Script,
}

/// A script that changes an install, with the event appender (`store/event.lua`) in front.
fn changing(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("store/event.lua")))
}

/// Every install id (score 0, ordered by id), for paging.
const INSTALLS: &str = "snykapps:installs";
/// ACTIVE installs whose refresh token expires, scored by that expiry (ms): the keep-alive's
/// work list and the "shortest remaining refresh-token life" gauge.
const KEEPALIVE: &str = "snykapps:keepalive";

/// The prefixes of the keys the grant cache mirrors (tracked by `store::tracking`).
pub(crate) const GRANT_PREFIX: &str = "snykapps:grant:";
pub(crate) const ORG_PREFIX: &str = "snykapps:org-installs:";

fn grant_key(id: &InstallId) -> String {
    format!("{GRANT_PREFIX}{{{id}}}")
}
fn lease_key(id: &InstallId) -> String {
    format!("snykapps:lease:{{{id}}}")
}
/// Every install that covers the org, scored by its creation time (newest = highest).
fn org_key(id: &OrgId) -> String {
    format!("{ORG_PREFIX}{{{id}}}")
}

/// A key the grant cache mirrors, by what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackedKey {
    Grant(InstallId),
    Org(OrgId),
}

/// The inverse of [`grant_key`] and [`org_key`]; `None` for anything else.
pub(crate) fn parse_tracked_key(key: &[u8]) -> Option<TrackedKey> {
    let key = std::str::from_utf8(key).ok()?;
    let tagged = |rest: &str| rest.strip_prefix('{')?.strip_suffix('}').map(str::to_owned);
    if let Some(rest) = key.strip_prefix(GRANT_PREFIX) {
        return InstallId::parse(&tagged(rest)?).ok().map(TrackedKey::Grant);
    }
    if let Some(rest) = key.strip_prefix(ORG_PREFIX) {
        return OrgId::parse(&tagged(rest)?).ok().map(TrackedKey::Org);
    }
    None
}
/// Before the fallback: the one install that served the org (a string). Read once and migrated.
fn legacy_org_key(id: &OrgId) -> String {
    format!("snykapps:org:{{{id}}}")
}

/// The plaintext a grant is sealed as: its serde form, every field but the install id.
fn stored_form(grant: &Grant) -> Vec<u8> {
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(grant).unwrap_or_default()
}

/// The grant of install `id` from its stored form.
fn from_stored_form(id: InstallId, plaintext: &[u8]) -> Result<Grant, serde_json::Error> {
    let mut grant: Grant = serde_json::from_slice(plaintext)?;
    grant.install_id = id;
    Ok(grant)
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
                create: changing(include_str!("store/create.lua")),
                fenced_write: changing(include_str!("store/fenced_write.lua")),
                mark_sending: Script::new(include_str!("store/mark_sending.lua")),
                settle: changing(include_str!("store/settle.lua")),
                renew: Script::new(include_str!("store/renew.lua")),
                compare_and_delete: changing(include_str!("store/compare_and_delete.lua")),
                reauthorize: changing(include_str!("store/reauthorize.lua")),
                read_events: Script::new(include_str!("store/read_events.lua")),
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

    /// Adds the event stream key and the event's arguments to a script call that changes an
    /// install (after the script's own arguments), when events are on.
    fn with_event(
        &self,
        call: &mut redis::ScriptInvocation<'_>,
        id: &InstallId,
        event: Option<&NewEvent>,
    ) {
        if let (Some(log), Some(e)) = (&self.events, event) {
            let orgs: Vec<String> = e.orgs.iter().map(ToString::to_string).collect();
            call.key(EVENTS_KEY)
                .arg(log.maxlen)
                .arg(id.to_string())
                .arg(e.kind.as_str())
                .arg(e.reason.unwrap_or(""))
                .arg(orgs.join(","));
        }
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

    /// Reads one grant: one round trip (`HMGET gen rec sending`).
    pub async fn load(&self, id: &InstallId) -> Result<Option<Versioned>, StoreError> {
        let mut c = self.conn.clone();
        let (generation, rec, sending): (Option<u64>, Option<Vec<u8>>, Option<String>) =
            redis::cmd("HMGET")
                .arg(grant_key(id))
                .arg("gen")
                .arg("rec")
                .arg("sending")
                .query_async(&mut c)
                .await?;
        match (generation, rec) {
            (Some(generation), Some(rec)) => {
                let mut v = self.open(id, generation, &rec)?;
                v.sending = sending.as_deref().and_then(SendingMark::parse);
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    fn open(
        &self,
        id: &InstallId,
        generation: u64,
        sealed: &[u8],
    ) -> Result<Versioned, StoreError> {
        let opened = self
            .keyring
            .open(&id.to_string(), generation, sealed)
            .map_err(|source| StoreError::Unreadable {
                install: *id,
                source,
            })?;
        let grant = from_stored_form(*id, &opened.plaintext).map_err(|e| StoreError::Corrupt {
            install: *id,
            reason: e.to_string(),
        })?;
        Ok(Versioned {
            generation,
            grant,
            sealed_with_primary: opened.sealed_with_primary,
            sending: None,
        })
    }

    fn seal(&self, grant: &Grant, generation: u64) -> Vec<u8> {
        self.keyring.seal(
            &grant.install_id.to_string(),
            generation,
            &stored_form(grant),
        )
    }

    /// Stores a new install's grant (generation 1) and indexes it. The keep-alive entry goes
    /// first, so a crash in between leaves an entry the sweeper drops, never a grant it misses.
    pub async fn create(&self, grant: &Grant) -> Result<(), StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &grant.orgs);
        self.index_keepalive(grant).await?;
        let mut call = self.scripts.create.key(grant_key(&id));
        call.arg(self.seal(grant, 1));
        let event = NewEvent::with_orgs(EventKind::Installed, grant.orgs.iter().map(|o| o.id));
        self.with_event(&mut call, &id, Some(&event));
        let created: i64 = call.invoke_async(&mut c).await?;
        if created != 1 {
            return Err(StoreError::InstallIdTaken(id));
        }
        // One command per key: on a cluster these keys live on different slots.
        let _: i64 = c.zadd(INSTALLS, id.to_string(), 0).await?;
        for org in &grant.orgs {
            let _: i64 = c
                .zadd(org_key(&org.id), id.to_string(), grant.created_at)
                .await?;
        }
        Ok(())
    }

    /// Writes `grant` over generation `expected`; with `lease_owner`, only while holding the lease.
    /// Leaves a "sending" mark as it is. No lifecycle event: for the "started" mark and re-seals.
    pub async fn write_fenced(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: Option<&str>,
    ) -> Result<Fenced, StoreError> {
        self.fenced(expected, grant, lease_owner, None).await
    }

    /// [`Store::write_fenced`] of a NEEDS_REAUTH verdict, with its event (`in_doubt` or
    /// `needs_reauth`) appended by the same script when the write lands.
    pub async fn write_verdict(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: &str,
    ) -> Result<Fenced, StoreError> {
        let event = verdict_event(grant);
        self.fenced(expected, grant, Some(lease_owner), event.as_ref())
            .await
    }

    async fn fenced(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<Fenced, StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &[]);
        let mut call = self.scripts.fenced_write.key(grant_key(&id));
        call.key(lease_key(&id))
            .arg(expected.to_string())
            .arg(self.seal(grant, expected + 1))
            .arg(lease_owner.unwrap_or(""));
        self.with_event(&mut call, &id, event);
        let n: i64 = call.invoke_async(&mut c).await?;
        Ok(match n {
            0 => Fenced::Stale,
            -1 => Fenced::NotLeaseHolder,
            n => Fenced::Written(n as u64),
        })
    }

    /// Writes the "sending" mark while `lease_owner` holds the lease and the record is still at
    /// `generation`, then waits until Redis has it durably. Only `Written` allows a send.
    pub async fn mark_sending(
        &self,
        id: &InstallId,
        generation: u64,
        lease_owner: &str,
        mark: &SendingMark,
    ) -> Result<Fenced, StoreError> {
        let mut c = self.durable_conn.clone();
        let _forget = Changed::grant(&self.cache, *id, &[]);
        let n: i64 = self
            .scripts
            .mark_sending
            .key(grant_key(id))
            .key(lease_key(id))
            .arg(generation.to_string())
            .arg(lease_owner)
            .arg(mark.encode())
            .invoke_async(&mut c)
            .await?;
        match n {
            1 => {
                self.durability.wait(&mut c).await?;
                Ok(Fenced::Written(generation))
            }
            -1 => Ok(Fenced::NotLeaseHolder),
            _ => Ok(Fenced::Stale),
        }
    }

    /// Stores the outcome of a refresh whose request went out under `mark`, fenced on that mark
    /// only (not on the lease, not on the generation: whatever was written meanwhile, a
    /// NEEDS_REAUTH for instance, is older than this outcome). Clears the mark, keeps the
    /// keep-alive index in step, and waits until Redis has it durably. Its event: `refreshed`
    /// for an ACTIVE grant (a new pair), the verdict's for a NEEDS_REAUTH one.
    pub async fn settle(
        &self,
        mark: &SendingMark,
        generation: u64,
        grant: &Grant,
    ) -> Result<Settled, StoreError> {
        let event = match grant.status {
            Status::Active => Some(NewEvent::plain(EventKind::Refreshed)),
            Status::NeedsReauth(_) => verdict_event(grant),
        };
        self.settle_with(mark, generation, grant, event.as_ref())
            .await
    }

    /// [`Store::settle`] with the event to append (None: the outcome is no lifecycle change,
    /// like clearing the marks of a refresh Snyk did not redeem).
    pub async fn settle_with(
        &self,
        mark: &SendingMark,
        mut generation: u64,
        grant: &Grant,
        event: Option<&NewEvent>,
    ) -> Result<Settled, StoreError> {
        let id = grant.install_id;
        let mut c = self.durable_conn.clone();
        let _forget = Changed::grant(&self.cache, id, &[]);
        let encoded = mark.encode();
        // Each round either writes, or learns the generation a concurrent write left behind
        // (the seal binds the generation, so the record is sealed again for it).
        for _ in 0..16 {
            let mut call = self.scripts.settle.key(grant_key(&id));
            call.arg(&encoded)
                .arg((generation + 1).to_string())
                .arg(self.seal(grant, generation + 1));
            self.with_event(&mut call, &id, event);
            let n: i64 = call.invoke_async(&mut c).await?;
            match n {
                0 => return Ok(Settled::Orphaned),
                n if n < 0 => generation = n.unsigned_abs(),
                n => {
                    if let Err(e) = self.durability.wait(&mut c).await {
                        // Stored on the primary all the same; only its survival of a crash is
                        // unconfirmed. Failing the refresh now would hide a good pair.
                        tracing::error!(install_id = %id, error = %e, "refreshed grant stored but not confirmed durable");
                    }
                    if let Err(e) = self.index_keepalive(grant).await {
                        // The sweeper re-scores a lagging entry when it meets it.
                        tracing::warn!(install_id = %id, error = %e, "could not update the keep-alive index");
                    }
                    return Ok(Settled::Written(n as u64));
                }
            }
        }
        Err(StoreError::Corrupt {
            install: id,
            reason: "the record kept changing under a settling refresh".into(),
        })
    }

    /// Puts an ACTIVE grant with a known refresh expiry into the keep-alive index at that expiry,
    /// or takes it out.
    pub async fn index_keepalive(&self, grant: &Grant) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let member = grant.install_id.to_string();
        match grant.refresh_expires_at {
            Some(at) if grant.is_active() => {
                let _: i64 = c.zadd(KEEPALIVE, member, at).await?;
            }
            _ => {
                let _: i64 = c.zrem(KEEPALIVE, member).await?;
            }
        }
        Ok(())
    }

    /// Drops an id from the keep-alive index (its grant is gone).
    pub async fn unindex_keepalive(&self, id: &InstallId) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.zrem(KEEPALIVE, id.to_string()).await?;
        Ok(())
    }

    /// Up to `limit` installs whose refresh token expires at or before `until`, soonest first.
    pub async fn keepalive_due(
        &self,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .zrangebyscore_limit(KEEPALIVE, "-inf", until, 0, limit as isize)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }

    /// The earliest refresh-token expiry over the keep-alive index (ACTIVE installs).
    pub async fn earliest_refresh_expiry(&self) -> Result<Option<UnixMillis>, StoreError> {
        let mut c = self.conn.clone();
        let first: Vec<(String, f64)> = c.zrange_withscores(KEEPALIVE, 0, 0).await?;
        Ok(first.first().map(|(_, score)| *score as UnixMillis))
    }

    /// Deletes the install while `lease_owner` holds its lease and the grant is still at
    /// `generation` (the one whose refresh token the deleter revoked): the grant and the lease
    /// in one script, with the `deleted` event, then its index entries.
    pub async fn delete(
        &self,
        grant: &Grant,
        generation: u64,
        lease_owner: &str,
    ) -> Result<Deleted, StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &grant.orgs);
        let mut call = self.scripts.compare_and_delete.key(lease_key(&id));
        call.key(grant_key(&id))
            .arg(lease_owner)
            .arg("delete")
            .arg(generation.to_string());
        self.with_event(&mut call, &id, Some(&NewEvent::plain(EventKind::Deleted)));
        match call.invoke_async::<i64>(&mut c).await? {
            0 => return Ok(Deleted::NotLeaseHolder),
            n if n < 0 => return Ok(Deleted::Moved),
            _ => {}
        }
        // Readers skip index entries whose grant is gone, so these may lag.
        for org in &grant.orgs {
            let _: i64 = c.zrem(org_key(&org.id), id.to_string()).await?;
        }
        let _: i64 = c.zrem(INSTALLS, id.to_string()).await?;
        self.unindex_keepalive(&id).await?;
        Ok(Deleted::Done)
    }

    /// Reconnect: replaces the grant of the existing install `fresh.install_id` with `fresh`
    /// (keeping the install's creation time) in one script that bumps the generation and deletes
    /// the "sending" mark, so no refresh begun before can land over it (docs/design.md,
    /// "Reconnect"); appends the `reauthorized` event; waits until Redis has it durably; then
    /// updates the indexes (keep-alive, orgs added and dropped). None when the install does not
    /// exist.
    pub async fn reauthorize(&self, fresh: &Grant) -> Result<Option<Reauthorized>, StoreError> {
        let id = fresh.install_id;
        let mut c = self.durable_conn.clone();
        // Each round either writes, or learns that the record moved (a late refresh or a verdict
        // landed): then the old grant is read again, so the refresh token revoked after the
        // write is the one that was replaced.
        for _ in 0..16 {
            let Some(old) = self.load(&id).await? else {
                return Ok(None);
            };
            let grant = Grant {
                created_at: old.grant.created_at,
                ..fresh.clone()
            };
            let mut orgs = old.grant.orgs.clone();
            orgs.extend(grant.orgs.iter().cloned());
            let _forget = Changed::grant(&self.cache, id, &orgs);
            let next = old.generation + 1;
            let mut call = self.scripts.reauthorize.key(grant_key(&id));
            call.arg(next.to_string()).arg(self.seal(&grant, next));
            let event =
                NewEvent::with_orgs(EventKind::Reauthorized, grant.orgs.iter().map(|o| o.id));
            self.with_event(&mut call, &id, Some(&event));
            let n: i64 = call.invoke_async(&mut c).await?;
            if n == 0 {
                return Ok(None);
            }
            if n < 0 {
                continue;
            }
            if let Err(e) = self.durability.wait(&mut c).await {
                // Stored on the primary all the same (as for a refreshed pair).
                tracing::error!(install_id = %id, error = %e, "reconnected grant stored but not confirmed durable");
            }
            if let Err(e) = self.reindex(&old.grant, &grant).await {
                // The grant is stored: failing now would revoke a pair that is in use. Readers
                // tolerate lagging index entries; a new org is indexed by the next reconnect.
                tracing::error!(install_id = %id, error = %e, "reconnected grant stored but its indexes could not be updated");
            }
            return Ok(Some(Reauthorized {
                old: old.grant,
                grant,
                generation: n as u64,
            }));
        }
        Err(StoreError::Corrupt {
            install: id,
            reason: "the record kept changing under a reconnect".into(),
        })
    }

    /// The indexes after a reconnect: the keep-alive entry at the new expiry, the new orgs
    /// indexed (at the install's creation time), the orgs no longer covered dropped.
    async fn reindex(&self, old: &Grant, new: &Grant) -> Result<(), StoreError> {
        let id = new.install_id;
        let mut c = self.conn.clone();
        self.index_keepalive(new).await?;
        let _: i64 = c.zadd(INSTALLS, id.to_string(), 0).await?;
        for org in &new.orgs {
            let _: i64 = c
                .zadd(org_key(&org.id), id.to_string(), new.created_at)
                .await?;
        }
        for org in old
            .orgs
            .iter()
            .filter(|o| !new.orgs.iter().any(|n| n.id == o.id))
        {
            let _: i64 = c.zrem(org_key(&org.id), id.to_string()).await?;
        }
        Ok(())
    }

    /// Up to `count` events after `cursor` (none when `cursor` is None), with the stream's trim
    /// state read in the same script.
    pub async fn read_events(
        &self,
        cursor: Option<EventId>,
        count: usize,
    ) -> Result<EventBatch, StoreError> {
        let mut c = self.conn.clone();
        let (oldest, last_generated, entries): (String, String, Vec<(String, Vec<String>)>) = self
            .scripts
            .read_events
            .key(EVENTS_KEY)
            .arg(cursor.map(|c| c.to_string()).unwrap_or_default())
            .arg(count)
            .invoke_async(&mut c)
            .await?;
        let id = |s: &str| {
            s.parse::<EventId>()
                .map_err(|_| StoreError::BadEventStream(format!("{s:?} is not an entry id")))
        };
        let mut events = Vec::with_capacity(entries.len());
        let mut last_read = None;
        for (entry_id, flat) in &entries {
            let entry_id = id(entry_id)?;
            last_read = Some(entry_id);
            let fields: Vec<(String, String)> = flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            match InstallEvent::from_fields(entry_id, &fields) {
                Some(e) => events.push(e),
                None => {
                    tracing::warn!(event_id = %entry_id, "skipping an event stream entry this version does not understand");
                }
            }
        }
        Ok(EventBatch {
            oldest: id(&oldest)?,
            last_generated: id(&last_generated)?,
            events,
            last_read,
            read: entries.len(),
        })
    }

    /// A connection of its own for one watcher's blocking waits (each blocks at most `block`).
    pub async fn event_waiter(&self, block: Duration) -> Result<EventWaiter, StoreError> {
        let Some(log) = &self.events else {
            return Err(StoreError::Unavailable(redis::RedisError::from((
                redis::ErrorKind::Client,
                "install events are off on Redis Cluster",
            ))));
        };
        let client = log.target.client(ProtocolVersion::RESP2)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(log.timeout))
            .set_response_timeout(Some(block + log.timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(EventWaiter { conn, block })
    }

    /// Every install that covers `org`, newest first: from the grant cache when it answers
    /// first, else from Redis (and kept); from the cache also when Redis does not answer.
    pub async fn installs_for_org(&self, org: &OrgId) -> Result<Arc<[InstallId]>, StoreError> {
        if let Some(ids) = self.cache.org(org) {
            return Ok(ids);
        }
        let ticket = self.cache.org_ticket(org);
        match self.read_installs_for_org(org).await {
            Ok(ids) => {
                let ids: Arc<[InstallId]> = ids.into();
                self.cache.insert_org(ticket, *org, Arc::clone(&ids));
                Ok(ids)
            }
            Err(e @ StoreError::Unavailable(_)) => {
                self.cache.redis_failed();
                self.cache.stand_in_org(org).ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Every install that covers `org`, newest first, as Redis has it. An org indexed before the
    /// fallback (one install in a string key) is migrated on first read.
    async fn read_installs_for_org(&self, org: &OrgId) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let mut ids: Vec<String> = c.zrevrange(org_key(org), 0, -1).await?;
        if ids.is_empty() {
            let legacy: Option<String> = c.get(legacy_org_key(org)).await?;
            if let Some(legacy) = legacy {
                let _forget = Changed::org(&self.cache, *org);
                let _: i64 = c.zadd(org_key(org), &legacy, 0).await?;
                let _: i64 = c.del(legacy_org_key(org)).await?;
                ids.push(legacy);
            }
        }
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }

    /// Drops an install from an org's list (its grant is gone).
    pub async fn unindex_org(&self, org: &OrgId, id: &InstallId) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _forget = Changed::org(&self.cache, *org);
        let _: i64 = c.zrem(org_key(org), id.to_string()).await?;
        Ok(())
    }

    /// Up to `limit` install ids after `after` (exclusive), in id order.
    pub async fn list_ids(
        &self,
        after: Option<&InstallId>,
        limit: usize,
    ) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(INSTALLS)
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }

    /// `SET NX PX`: takes the refresh lease of `id` for `owner`.
    pub async fn try_lease(
        &self,
        id: &InstallId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(lease_key(id))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(ok.is_some())
    }

    /// Extends the lease while `owner` still holds it; false when it was lost.
    pub async fn renew_lease(
        &self,
        id: &InstallId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .scripts
            .renew
            .key(lease_key(id))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Releases the lease only if `owner` still holds it (compare-and-delete; no event).
    pub async fn release_lease(&self, id: &InstallId, owner: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .scripts
            .compare_and_delete
            .key(lease_key(id))
            .arg(owner)
            .arg("release")
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Raw access for tests and the re-seal command: the sealed bytes as stored.
    pub async fn raw_record(&self, id: &InstallId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.hget(grant_key(id), "rec").await?)
    }
}

/// The event of a NEEDS_REAUTH verdict written as `grant` (None for an ACTIVE grant).
fn verdict_event(grant: &Grant) -> Option<NewEvent> {
    match grant.status {
        Status::Active => None,
        Status::NeedsReauth(r) => Some(NewEvent::verdict(r)),
    }
}

/// The grant cache's default size (`TOKEN_CACHE_MAX_INSTALLS` sets it in a service).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Drops the cache entries of what a write changes when the write is over, whatever its outcome
/// (a write that failed may still have landed), also when its future is dropped half way.
struct Changed<'a> {
    cache: &'a GrantCache,
    install: Option<InstallId>,
    orgs: Vec<OrgId>,
}

impl<'a> Changed<'a> {
    fn grant(cache: &'a GrantCache, install: InstallId, orgs: &[Org]) -> Self {
        Changed {
            cache,
            install: Some(install),
            orgs: orgs.iter().map(|o| o.id).collect(),
        }
    }

    fn org(cache: &'a GrantCache, org: OrgId) -> Self {
        Changed {
            cache,
            install: None,
            orgs: vec![org],
        }
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(id) = &self.install {
            self.cache.forget_install(id);
        }
        for org in &self.orgs {
            self.cache.forget_org(org);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn tracked_keys_parse_back() {
        let id = InstallId::new_random();
        assert_eq!(
            parse_tracked_key(grant_key(&id).as_bytes()),
            Some(TrackedKey::Grant(id))
        );
        let org = OrgId::parse("0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11").unwrap();
        assert_eq!(
            parse_tracked_key(org_key(&org).as_bytes()),
            Some(TrackedKey::Org(org))
        );
        assert_eq!(parse_tracked_key(b"snykapps:grant:nope"), None);
        assert_eq!(parse_tracked_key(lease_key(&id).as_bytes()), None);
    }

    /// A grant with every field set to something other than its default.
    fn full_grant() -> Grant {
        Grant {
            install_id: InstallId::new_random(),
            access_token: "snyk_at_stored".to_owned().into(),
            refresh_token: "snyk_rt_stored".to_owned().into(),
            token_type: "bearer".into(),
            access_expires_at: 1_700_000_360_000,
            access_lifetime_secs: 3600,
            refresh_expires_at: Some(1_715_552_000_000),
            refresh_lifetime_secs: Some(15_552_000),
            scope: "org.read org.project.read".into(),
            bot_id: "bot-7".into(),
            orgs: vec![Org {
                id: OrgId::parse("0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11").unwrap(),
                name: "Acme \"R&D\"".into(),
            }],
            created_at: 1_690_000_000_000,
            status: Status::NeedsReauth(crate::grant::ReauthReason::RefreshInDoubt),
            refresh_started_at: Some(1_700_000_000_123),
        }
    }

    /// Every field, the tokens included (`Debug` covers the others and redacts the tokens).
    fn assert_same(a: &Grant, b: &Grant) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(
            a.access_token.expose_secret(),
            b.access_token.expose_secret()
        );
        assert_eq!(
            a.refresh_token.expose_secret(),
            b.refresh_token.expose_secret()
        );
    }

    #[test]
    fn a_grant_round_trips_through_its_stored_form() {
        let grant = full_grant();
        let stored = stored_form(&grant);
        assert_same(
            &from_stored_form(grant.install_id, &stored).unwrap(),
            &grant,
        );
        let text = String::from_utf8(stored).unwrap();
        assert!(
            !text.contains(&grant.install_id.to_string()),
            "the key names the install, the record does not: {text}"
        );
    }

    /// Records written before the grant was serialised directly: they load, and a grant is
    /// stored byte for byte as they were.
    #[test]
    fn records_stored_by_earlier_versions_still_load() {
        const FULL: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":1715552000000,"refresh_lifetime_secs":15552000,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[{"id":"0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11","name":"Acme \"R&D\""}],"created_at":1690000000000,"status":{"state":"needs_reauth","reason":"refresh_in_doubt"},"refresh_started_at":1700000000123}"#;
        const BARE: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":null,"refresh_lifetime_secs":null,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[],"created_at":1690000000000,"status":{"state":"active"},"refresh_started_at":null}"#;
        // Before the refresh token's lifetime was kept.
        const NO_REFRESH_LIFETIME: &str = r#"{"access_token":"snyk_at_stored","refresh_token":"snyk_rt_stored","token_type":"bearer","access_expires_at":1700000360000,"access_lifetime_secs":3600,"refresh_expires_at":null,"scope":"org.read org.project.read","bot_id":"bot-7","orgs":[],"created_at":1690000000000,"status":{"state":"active"},"refresh_started_at":null}"#;

        let full = full_grant();
        let bare = Grant {
            refresh_expires_at: None,
            refresh_lifetime_secs: None,
            orgs: vec![],
            status: Status::Active,
            refresh_started_at: None,
            ..full.clone()
        };
        let id = full.install_id;
        for (stored, expected) in [(FULL, &full), (BARE, &bare)] {
            assert_same(&from_stored_form(id, stored.as_bytes()).unwrap(), expected);
            assert_eq!(String::from_utf8(stored_form(expected)).unwrap(), stored);
        }
        assert_same(
            &from_stored_form(id, NO_REFRESH_LIFETIME.as_bytes()).unwrap(),
            &bare,
        );
    }

    #[test]
    fn sending_marks_round_trip() {
        let m = SendingMark {
            replica: "ab12".into(),
            flight: "cd34".into(),
            at: 1_700_000_000_123,
        };
        assert_eq!(SendingMark::parse(&m.encode()), Some(m));
        assert_eq!(SendingMark::parse("garbage"), None);
    }
}
