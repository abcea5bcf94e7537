//! Grants in Redis: sealed records, the refresh lease and the fenced writes (Lua), and the indexes.
//!
//! Keys (every key of one install shares the `{install_id}` hash tag, so the scripts that touch a
//! grant and its lease together stay on one Redis Cluster slot):
//! - `snykapps:grant:{<install>}`: hash `gen` (u64, bumped by every write) and `rec` (sealed JSON);
//! - `snykapps:lease:{<install>}`: the refresh lease, value = a random owner token, with a PX TTL;
//! - `snykapps:org:{<org>}`: the install that serves this org (the newest install wins);
//! - `snykapps:installs`: sorted set of every install id (score 0, ordered by id), for paging.

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    AsyncCommands, Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::{
    grant::{Grant, InstallId, Org, OrgId, Status, UnixMillis},
    seal::{Keyring, OpenError},
};

/// A grant and the generation it was read at (the fence for the next write).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub generation: u64,
    pub grant: Grant,
    /// False when sealed with an older key: the next write re-seals it with the primary key.
    pub sealed_with_primary: bool,
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

/// Where Redis is: one server (`REDIS_URL`) or a cluster (`REDIS_CLUSTER_URLS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

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
    keyring: Arc<Keyring>,
    scripts: Arc<Scripts>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    create: Script,
    fenced_write: Script,
    renew: Script,
    release: Script,
    unindex_org: Script,
}

// Writes `rec` at generation ARGV[1]+1 only if the record is still at ARGV[1]; when ARGV[3] is not
// empty, also only while KEYS[2] (the lease) holds that owner. Returns the new generation, 0 when
// stale, -1 when the lease is not ours.
const FENCED_WRITE: &str = r#"
local g = redis.call('HGET', KEYS[1], 'gen')
if g ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
local n = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'gen', tostring(n), 'rec', ARGV[2])
return n
"#;

const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'gen', '1', 'rec', ARGV[1])
return 1
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const UNINDEX_ORG: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const INSTALLS: &str = "snykapps:installs";

fn grant_key(id: &InstallId) -> String {
    format!("snykapps:grant:{{{id}}}")
}
fn lease_key(id: &InstallId) -> String {
    format!("snykapps:lease:{{{id}}}")
}
fn org_key(id: &OrgId) -> String {
    format!("snykapps:org:{{{id}}}")
}

/// The sealed plaintext. Only this module sees tokens as plain strings, and only to seal them.
#[derive(Serialize, Deserialize)]
struct Record {
    access_token: String,
    refresh_token: String,
    token_type: String,
    access_expires_at: UnixMillis,
    access_lifetime_secs: u64,
    refresh_expires_at: Option<UnixMillis>,
    scope: String,
    bot_id: String,
    orgs: Vec<Org>,
    created_at: UnixMillis,
    status: Status,
    refresh_started_at: Option<UnixMillis>,
}

impl Store {
    /// Connects to Redis (fails fast when it is unreachable).
    pub async fn connect(
        target: &RedisTarget,
        keyring: Arc<Keyring>,
        timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let conn = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(ConnectionManager::new_with_config(client, config).await?)
            }
            RedisTarget::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .retries(2)
                        .build()?;
                Conn::Cluster(client.get_async_connection().await?)
            }
        };
        Ok(Store {
            conn,
            keyring,
            scripts: Arc::new(Scripts {
                create: Script::new(CREATE),
                fenced_write: Script::new(FENCED_WRITE),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
                unindex_org: Script::new(UNINDEX_ORG),
            }),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Reads one grant: one round trip (`HMGET gen rec`).
    pub async fn load(&self, id: &InstallId) -> Result<Option<Versioned>, StoreError> {
        let mut c = self.conn.clone();
        let (generation, rec): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(grant_key(id))
            .arg("gen")
            .arg("rec")
            .query_async(&mut c)
            .await?;
        match (generation, rec) {
            (Some(generation), Some(rec)) => self.open(id, generation, &rec).map(Some),
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
        let r: Record =
            serde_json::from_slice(&opened.plaintext).map_err(|e| StoreError::Corrupt {
                install: *id,
                reason: e.to_string(),
            })?;
        let grant = Grant {
            install_id: *id,
            access_token: r.access_token.into(),
            refresh_token: r.refresh_token.into(),
            token_type: r.token_type,
            access_expires_at: r.access_expires_at,
            access_lifetime_secs: r.access_lifetime_secs,
            refresh_expires_at: r.refresh_expires_at,
            scope: r.scope,
            bot_id: r.bot_id,
            orgs: r.orgs,
            created_at: r.created_at,
            status: r.status,
            refresh_started_at: r.refresh_started_at,
        };
        Ok(Versioned {
            generation,
            grant,
            sealed_with_primary: opened.sealed_with_primary,
        })
    }

    fn seal(&self, grant: &Grant, generation: u64) -> Vec<u8> {
        let r = Record {
            access_token: grant.access_token.expose_secret().to_owned(),
            refresh_token: grant.refresh_token.expose_secret().to_owned(),
            token_type: grant.token_type.clone(),
            access_expires_at: grant.access_expires_at,
            access_lifetime_secs: grant.access_lifetime_secs,
            refresh_expires_at: grant.refresh_expires_at,
            scope: grant.scope.clone(),
            bot_id: grant.bot_id.clone(),
            orgs: grant.orgs.clone(),
            created_at: grant.created_at,
            status: grant.status,
            refresh_started_at: grant.refresh_started_at,
        };
        // Serializing plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&r).unwrap_or_default();
        self.keyring
            .seal(&grant.install_id.to_string(), generation, &json)
    }

    /// Stores a new install's grant (generation 1), then indexes it and its orgs.
    pub async fn create(&self, grant: &Grant) -> Result<(), StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let created: i64 = self
            .scripts
            .create
            .key(grant_key(&id))
            .arg(self.seal(grant, 1))
            .invoke_async(&mut c)
            .await?;
        if created != 1 {
            return Err(StoreError::Corrupt {
                install: id,
                reason: "install id already in use".into(),
            });
        }
        // One command per key: on a cluster these keys live on different slots.
        let _: i64 = c.zadd(INSTALLS, id.to_string(), 0).await?;
        for org in &grant.orgs {
            let _: () = c.set(org_key(&org.id), id.to_string()).await?;
        }
        Ok(())
    }

    /// Writes `grant` over generation `expected`; with `lease_owner`, only while holding the lease.
    pub async fn write_fenced(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: Option<&str>,
    ) -> Result<Fenced, StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let n: i64 = self
            .scripts
            .fenced_write
            .key(grant_key(&id))
            .key(lease_key(&id))
            .arg(expected.to_string())
            .arg(self.seal(grant, expected + 1))
            .arg(lease_owner.unwrap_or(""))
            .invoke_async(&mut c)
            .await?;
        Ok(match n {
            0 => Fenced::Stale,
            -1 => Fenced::NotLeaseHolder,
            n => Fenced::Written(n as u64),
        })
    }

    /// Deletes the install: its org index entries (only those still pointing at it), its listing
    /// entry, then the grant and any lease.
    pub async fn delete(&self, grant: &Grant) -> Result<(), StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        for org in &grant.orgs {
            let _: i64 = self
                .scripts
                .unindex_org
                .key(org_key(&org.id))
                .arg(id.to_string())
                .invoke_async(&mut c)
                .await?;
        }
        let _: i64 = c.zrem(INSTALLS, id.to_string()).await?;
        let _: i64 = c.del(&[grant_key(&id), lease_key(&id)]).await?;
        Ok(())
    }

    /// The install that serves `org`, if any.
    pub async fn install_for_org(&self, org: &OrgId) -> Result<Option<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = c.get(org_key(org)).await?;
        Ok(v.and_then(|s| InstallId::parse(&s).ok()))
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

    /// Releases the lease only if `owner` still holds it (compare-and-delete).
    pub async fn release_lease(&self, id: &InstallId, owner: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .scripts
            .release
            .key(lease_key(id))
            .arg(owner)
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
