//! How a store operation fails.

use crate::{grant::InstallId, seal::OpenError};

/// Why the store could not do what it was asked.
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
