//! The lifecycle event stream in Redis: the arguments every changing script passes to the event
//! appender (`store/event.lua`), the non-blocking read of entries with the stream's trim state
//! (`store/read_events.lua`), and a watcher's own connection for its blocking waits. What the
//! events mean is `crate::events`; following them for a client is `crate::watch`.

use std::{fmt, time::Duration};

use redis::{ProtocolVersion, Value};

use super::{Store, error::StoreError, keys::EVENTS_KEY};
use crate::{
    events::{EventId, InstallEvent, NewEvent},
    grant::InstallId,
};

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

impl Store {
    /// Adds the event stream key and the event's arguments to a script call that changes an
    /// install (after the script's own arguments), when events are on.
    pub(super) fn with_event(
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
}
