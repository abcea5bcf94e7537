//! Following the event stream for `WatchInstallEvents`: a watcher replays the events after its
//! cursor, then follows new ones (docs/design.md, "Events").
//!
//! Every read of entries is non-blocking and atomic with the stream's trim state
//! (`store/read_events.lua`), so trimmed history is always noticed (OUT_OF_RANGE); waiting for new
//! entries is a blocking `XREAD` on a connection of the watcher's own, never on the shared one (a
//! blocking command would stall every other command multiplexed on it).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    events::{BadEventId, EventId, InstallEvent, Start},
    store::{EventBatch, EventWaiter, Store, StoreError},
};

/// Entries a watcher reads at once.
const BATCH: usize = 256;
/// How long one blocking wait for new entries lasts before the watcher checks again.
const WAIT: Duration = Duration::from_secs(5);
/// Watchers one replica serves at once (each holds one Redis connection of its own).
pub const MAX_WATCHERS: usize = 256;

/// Why a watch ended (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    BadStart(#[from] BadEventId),
    #[error(
        "events after {after} were trimmed (the stream keeps about TOKEN_EVENTS_MAXLEN events; the oldest retained one is {oldest}): resume from \"0\" (every retained event) and reconcile with ListInstalls"
    )]
    Trimmed { after: EventId, oldest: EventId },
    #[error(
        "after_event_id {after} is later than the newest event {newest}: it does not come from this stream"
    )]
    FromTheFuture { after: EventId, newest: EventId },
    #[error(
        "install events are not available on Redis Cluster (REDIS_CLUSTER_URLS): a change and its event must be written by one script, and one install's keys and the global stream live on different slots"
    )]
    Cluster,
    #[error("too many watchers on this replica (at most {MAX_WATCHERS}); retry later")]
    TooManyWatchers,
    #[error("token-service is shutting down; resume from the last event id received")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a watch starts reading (exclusive; "0-0" = from the oldest retained event), checked
/// against the stream before the RPC answers, so a bad start is the RPC's status rather than an
/// error in the middle of its stream.
#[derive(Debug, Clone, Copy)]
pub struct Cursor(EventId);

impl Cursor {
    pub async fn open(store: &Store, start: Start) -> Result<Cursor, WatchError> {
        let state = store.read_events(None, 0).await?;
        Ok(Cursor(match start {
            Start::Now => state.last_generated,
            Start::Beginning => EventId::ZERO,
            Start::After(id) => {
                check(id, &state)?;
                id
            }
        }))
    }
}

/// Are the events strictly after `after` all still in the stream, and is `after` from it?
/// Trimming removes the oldest entries only, so they are unless `after` is older than the
/// oldest retained entry. (When `after` is exactly the last entry trimmed, nothing was lost,
/// but that cannot be told apart: the answer errs on the side of OUT_OF_RANGE.) "0-0" reads
/// from the oldest retained entry, whatever was trimmed.
fn check(after: EventId, batch: &EventBatch) -> Result<(), WatchError> {
    if after != EventId::ZERO && after < batch.oldest {
        return Err(WatchError::Trimmed {
            after,
            oldest: batch.oldest,
        });
    }
    if after > batch.last_generated {
        return Err(WatchError::FromTheFuture {
            after,
            newest: batch.last_generated,
        });
    }
    Ok(())
}

/// Replays and follows the events after `cursor` into `tx` until the receiver is dropped (the
/// client went away), `stop` fires (shutdown: ends with [`WatchError::ShuttingDown`]) or an
/// error ends the watch (sent as the last item). Owns its blocking connection: returning
/// releases everything.
pub async fn watch(
    store: Store,
    cursor: Cursor,
    tx: mpsc::Sender<Result<InstallEvent, WatchError>>,
    stop: CancellationToken,
) {
    let Cursor(mut cursor) = cursor;
    let mut waiter: Option<EventWaiter> = None;
    let result = async {
        loop {
            let batch = store.read_events(Some(cursor), BATCH).await?;
            check(cursor, &batch)?;
            let full = batch.read >= BATCH;
            if let Some(last) = batch.last_read {
                cursor = last;
            }
            for event in batch.events {
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(()); // The client went away.
                }
            }
            if full {
                continue;
            }
            let w = match &mut waiter {
                Some(w) => w,
                None => waiter.insert(store.event_waiter(WAIT).await?),
            };
            tokio::select! {
                // Waits for an entry after the cursor, or WAIT; either way the loop reads again
                // (the wait's own result is not used: reads go through the atomic script).
                waited = w.wait_after(cursor) => waited?,
                () = tx.closed() => return Ok(()),
                () = stop.cancelled() => return Err(WatchError::ShuttingDown),
            }
        }
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}
