//! The lease as a flight holds it: a random owner per holder, and the keeper that renews the lease
//! while its holder works and says when it may no longer send.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rand::Rng as _;

use crate::{grant::InstallId, store::Store};

pub(super) fn random_owner() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Keeps a lease alive while its holder works, and says when it may no longer send: at the
/// first renewal that fails (lost, or unknown because Redis did not answer), sends stop for good.
pub(super) struct LeaseKeeper {
    may_send: Arc<AtomicBool>,
    really_lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    pub(super) fn start(store: Store, id: InstallId, owner: String, ttl: Duration) -> Self {
        let may_send = Arc::new(AtomicBool::new(true));
        let really_lost = Arc::new(AtomicBool::new(false));
        let (send, lost) = (Arc::clone(&may_send), Arc::clone(&really_lost));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew_lease(&id, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        send.store(false, Ordering::SeqCst);
                        lost.store(true, Ordering::SeqCst);
                        tracing::error!(install_id = %id, "refresh lease lost; no further request is sent");
                        return;
                    }
                    Err(e) => {
                        send.store(false, Ordering::SeqCst);
                        tracing::warn!(install_id = %id, error = %e, "could not renew the refresh lease; no further request is sent");
                    }
                }
            }
        });
        LeaseKeeper {
            may_send,
            really_lost,
            task,
        }
    }

    pub(super) fn may_send(&self) -> bool {
        self.may_send.load(Ordering::SeqCst)
    }

    /// Redis said the lease is no longer ours (not merely "Redis did not answer").
    pub(super) fn really_lost(&self) -> bool {
        self.really_lost.load(Ordering::SeqCst)
    }

    pub(super) fn stop(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use test_support::RedisServer;

    use super::*;
    use crate::{seal::Keyring, store::RedisTarget};

    async fn store(redis: &RedisServer) -> Store {
        let keyring = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        Store::connect(
            &RedisTarget::parse(&redis.url()).unwrap(),
            Arc::new(keyring),
            Duration::from_millis(300),
            0,
        )
        .await
        .unwrap()
    }

    /// "A failed renewal stops further sends at once": a lease taken over by another owner is
    /// noticed at the next renewal, and the holder may send no more.
    #[tokio::test]
    async fn a_lost_lease_stops_sends_at_the_next_renewal() {
        let redis = RedisServer::start().unwrap();
        let store = store(&redis).await;
        let id = InstallId::new_random();
        let ttl = Duration::from_millis(300);
        assert!(store.try_lease(&id, "holder", ttl).await.unwrap());
        let lease = LeaseKeeper::start(store.clone(), id, "holder".into(), ttl);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(lease.may_send(), "renewed past its first TTL");
        assert!(!lease.really_lost());

        // The lease runs out and a successor takes it (as after a freeze).
        store.release_lease(&id, "holder").await.unwrap();
        assert!(store.try_lease(&id, "successor", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!lease.may_send());
        assert!(lease.really_lost());
        lease.stop();
    }

    /// A renewal Redis does not answer also stops sends (the lease may be gone), without
    /// claiming the lease is lost.
    #[tokio::test]
    async fn an_unanswered_renewal_stops_sends() {
        let mut redis = RedisServer::start().unwrap();
        let store = store(&redis).await;
        let id = InstallId::new_random();
        let ttl = Duration::from_millis(300);
        assert!(store.try_lease(&id, "holder", ttl).await.unwrap());
        let lease = LeaseKeeper::start(store.clone(), id, "holder".into(), ttl);
        redis.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!lease.may_send());
        assert!(!lease.really_lost());
        lease.stop();
    }
}
