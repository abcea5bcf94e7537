//! Grants in Redis: sealed records, the refresh lease and the fenced writes (Lua scripts in
//! `store/*.lua`), the indexes, the lifecycle event stream, and the durability barrier.
//!
//! Every key, who writes it and under which fence is listed in docs/design.md ("Redis keys").
//! Every key of one install shares the `{install_id}` hash tag, so the scripts that touch a grant
//! and its lease together stay on one Redis Cluster slot; the indexes are separate keys written
//! by separate commands, and every reader tolerates an index entry that lags its grant.
//!
//! One [`Store`] does it all; its operations are split by concern, in this reading order:
//! - `connect`: the store itself, its connections (one server or a cluster) and its scripts;
//! - `keys`: the names of the keys; `error`: how an operation fails;
//! - `record`: one grant's hash (generation, sealed record, "sending" mark) and its stored form;
//! - `lease`: the refresh lease; `fenced`: the writes of a refresh, fenced on the generation, the
//!   lease or the "sending" mark, and settling its outcome;
//! - `install`: create, reconnect and delete an install with its indexes; `index`: reading the
//!   install indexes (by id, by org); `keepalive`: the keep-alive index;
//! - `events`: the lifecycle event stream; `budget`: each install's Snyk request budget;
//! - `changed`: each write drops what it changes from the grant cache; `tracking`: the connection
//!   that drops what other clients change;
//! - `durability`: how durable an acknowledged write is, and the wait that makes it so.

mod budget;
mod changed;
mod connect;
pub mod durability;
mod error;
mod events;
mod fenced;
mod index;
mod install;
mod keepalive;
mod keys;
mod lease;
mod record;
pub mod tracking;

/// Where Redis is: one server (`REDIS_URL`) or a cluster (`REDIS_CLUSTER_URLS`), with TLS and
/// credentials; printed without its password.
pub use service_runtime::redis::RedisTarget;

pub use self::{
    budget::{Reservation, Schedule},
    connect::{DEFAULT_CACHE_CAPACITY, Store},
    error::StoreError,
    events::{EventBatch, EventWaiter},
    fenced::{Fenced, SendingMark, Settled},
    install::{Deleted, Reauthorized},
    record::Versioned,
};
