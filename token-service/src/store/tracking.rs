//! The connection that keeps the grant cache coherent: RESP3, `CLIENT TRACKING ON BCAST` on the
//! prefixes of grants and org indexes, so Redis pushes the name of every such key any client
//! changes (docs/design.md, "The grant cache").
//!
//! It reconnects by itself. While it is up the cache answers first; when it drops (a disconnection
//! pushed by the client library, or a PING unanswered within the Redis timeout, which also catches
//! a silent network cut) the cache stops answering first at once; when a new connection tracks
//! again, only entries read from then on answer first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use service_runtime::redis::RedisTarget;
use tokio_util::sync::CancellationToken;

use super::keys::{GRANT_PREFIX, ORG_PREFIX, TrackedKey, parse_tracked_key};
use crate::{backoff::Backoff, cache::GrantCache};

/// How often the connection proves it is alive.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Pauses between reconnection attempts.
const RECONNECT: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2));

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Keeps a tracking connection up until `shutdown`. Only a single Redis server is tracked; on a
/// cluster the cache stays untracked (it stands in for Redis only through an outage).
pub async fn run(
    target: RedisTarget,
    cache: Arc<GrantCache>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    if target.is_cluster() {
        tracing::info!(
            "grant cache: Redis Cluster is not tracked; the cache only stands in for Redis during an outage"
        );
        return;
    }
    let mut failures = 0;
    loop {
        let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let ran = tokio::select! {
            () = shutdown.cancelled() => return,
            ran = track(&target, &cache, session, timeout) => ran,
        };
        cache.tracking_lost(session);
        match ran {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "grant cache: tracking connection lost; Redis answers first until it is back");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONNECT.delay(failures)) => {}
        }
    }
}

/// One tracking connection, from connect to loss. `Ok` when it ran and then dropped.
async fn track(
    target: &RedisTarget,
    cache: &Arc<GrantCache>,
    session: u64,
    timeout: Duration,
) -> Result<(), redis::RedisError> {
    let client = target.client(ProtocolVersion::RESP3)?;
    let pushes = Arc::clone(cache);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Runs on the connection's own task, in the order Redis pushed: no queue to fall behind.
        .set_push_sender(move |push: PushInfo| {
            on_push(&pushes, session, push);
            Ok::<(), redis::aio::SendError>(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(GRANT_PREFIX)
        .arg("PREFIX")
        .arg(ORG_PREFIX)
        .query_async(&mut conn)
        .await?;
    cache.tracking_started(session);
    tracing::info!("grant cache: tracking changes; the cache answers first");
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    }
}

/// Applies one push of the tracking connection `session` to the cache.
fn on_push(cache: &GrantCache, session: u64, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    let name = match key {
                        Value::BulkString(b) => b.as_slice(),
                        Value::SimpleString(s) => s.as_bytes(),
                        _ => continue,
                    };
                    match parse_tracked_key(name) {
                        Some(TrackedKey::Grant(id)) => cache.forget_install(&id),
                        Some(TrackedKey::Org(org)) => cache.forget_org(&org),
                        // A key of ours we cannot read: anything may have changed.
                        None => cache.clear(),
                    }
                }
            }
            // A null key list: the database was flushed.
            _ => cache.clear(),
        },
        PushKind::Disconnection => cache.tracking_lost(session),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::grant::{Grant, Handout, InstallId, now_millis, tests::sample};

    #[test]
    fn pushes_drop_their_entries_and_a_flush_drops_all() {
        let cache = GrantCache::new(16);
        cache.tracking_started(3);
        let (a, b) = (InstallId::new_random(), InstallId::new_random());
        for id in [a, b] {
            let g: Grant = sample(id, 3600, now_millis() + 3_600_000);
            cache.insert_install(cache.install_ticket(&id), Arc::new(Handout::from(&g)));
        }
        let key = Value::BulkString(format!("{GRANT_PREFIX}{{{a}}}").into_bytes());
        on_push(
            &cache,
            3,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(vec![key])],
            },
        );
        assert!(cache.install(&a).is_none());
        assert!(cache.install(&b).is_some());
        on_push(
            &cache,
            3,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        assert!(cache.install(&b).is_none());
        on_push(
            &cache,
            3,
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert!(!cache.answers_first());
    }
}
