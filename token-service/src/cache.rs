//! The process-local cache of opened grants: what `GetAccessToken` answers from without a Redis
//! round trip, a decryption or a parse (docs/design.md, "The grant cache").
//!
//! Two maps, both bounded and least-recently-used: install -> [`Handout`] (the access half of a
//! grant, never its refresh token) and org -> the installs that cover it (newest first). Both are
//! kept coherent across replicas by Redis server-assisted client-side caching: a connection of
//! its own (`store::tracking`) asks Redis to broadcast every change to a grant or an org index
//! (`CLIENT TRACKING ON BCAST`), and each change it hears of drops the entry here. This replica's
//! own writes drop their entries synchronously (`Store`), before the write returns.
//!
//! The cache answers first only while that connection is up ([`Coherence::Tracked`]), and only
//! with entries read while it was up. When it is down, invalidations may be missed: Redis answers
//! first and the cache only stands in when Redis does not answer (a valid token is served through
//! a Redis outage). Entries read before a new tracking connection came up are never trusted to
//! answer first again (they may have missed a change), but they may still stand in for Redis
//! until a new read replaces them.
//!
//! A read that races a change cannot put the old value back: every shard counts the changes it
//! heard of, a reader takes the count before it reads Redis ([`Ticket`]) and its insert is
//! dropped when the count moved meanwhile.
//!
//! A lookup takes only its shard's read lock: lookups never wait for each other, also when a
//! thread holding the lock is preempted (a runtime with more workers than cores). The LRU order
//! is refreshed at most once per [`PROMOTE_EVERY_MS`] per entry, by a write lock the lookup only
//! tries to take (never waits for); inserts, invalidations and flushes take it and wait.

use std::{
    hash::{BuildHasher, Hash},
    num::NonZeroUsize,
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
};

use lru::LruCache;

use crate::grant::{Handout, InstallId, OrgId, now_millis};

/// Shards per map: enough that 64 concurrent streams rarely meet on one lock.
const SHARDS: usize = 64;

/// How often (ms) a lookup moves its entry to the front of the LRU order, at most.
const PROMOTE_EVERY_MS: i64 = 1_000;

/// How long the cache answers first after Redis failed to answer, while the tracking connection
/// is down: the outage's callers are not each made to wait for a Redis timeout.
const OUTAGE_HOLD_MS: i64 = 1_000;

/// Whether cached entries are known to be current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherence {
    /// The tracking connection is up: every change since an entry was read drops it.
    Tracked,
    /// Changes may be missed: Redis answers first, the cache only through an outage.
    Untracked,
}

/// What [`GrantCache::insert_install`] and [`GrantCache::insert_org`] need to prove that nothing
/// changed the entry between the read and the insert.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    epoch: u64,
}

/// Counters of what the cache did (read by tests and `/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
    pub flushes: u64,
    /// Tokens handed out from the cache because Redis did not answer.
    pub served_in_outage: u64,
}

struct Shard<K: Hash + Eq, V> {
    /// Changes heard of for keys of this shard (and every flush).
    epoch: AtomicU64,
    /// A std lock: held for one map operation, never across an await. Lookups read (`peek`),
    /// only changes and the occasional LRU promotion write.
    map: RwLock<LruCache<K, Stamped<V>>>,
}

/// A value, the tracking session it was read in, and when it last moved to the LRU front.
struct Stamped<V> {
    value: V,
    session: u64,
    promoted: AtomicI64,
}

impl<K: Hash + Eq + Copy, V: Clone> Shard<K, V> {
    fn new(cap: NonZeroUsize) -> Self {
        Shard {
            epoch: AtomicU64::new(0),
            map: RwLock::new(LruCache::new(cap)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, LruCache<K, Stamped<V>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, LruCache<K, Stamped<V>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The write lock if nobody holds the lock now.
    fn try_write(&self) -> Option<RwLockWriteGuard<'_, LruCache<K, Stamped<V>>>> {
        match self.map.try_write() {
            Ok(map) => Some(map),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// A bounded LRU map, sharded by key, each shard counting the changes it heard of.
struct Map<K: Hash + Eq, V> {
    shards: Box<[Shard<K, V>]>,
    /// The LRU maps' own fast hasher (foldhash), seeded apart from theirs; the shard comes from
    /// its high half, which their tables do not use to place a key.
    hasher: lru::DefaultHasher,
}

impl<K: Hash + Eq + Copy, V: Clone> Map<K, V> {
    fn new(capacity: usize) -> Self {
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Map {
            shards: (0..SHARDS).map(|_| Shard::new(per_shard)).collect(),
            hasher: lru::DefaultHasher::default(),
        }
    }

    fn shard_of(&self, key: &K) -> usize {
        ((self.hasher.hash_one(key) >> 32) as usize) % self.shards.len()
    }

    /// The value and the session it was read in.
    fn get(&self, key: &K) -> Option<(V, u64)> {
        let shard = &self.shards[self.shard_of(key)];
        let (found, promote) = {
            let map = shard.read();
            let stamped = map.peek(key)?;
            let now = now_millis();
            let due = now - stamped.promoted.load(Ordering::Relaxed) >= PROMOTE_EVERY_MS;
            ((stamped.value.clone(), stamped.session), due.then_some(now))
        };
        if let Some(now) = promote
            && let Some(mut map) = shard.try_write()
            && let Some(stamped) = map.get(key)
        {
            stamped.promoted.store(now, Ordering::Relaxed);
        }
        Some(found)
    }

    fn ticket(&self, key: &K) -> Ticket {
        let shard = self.shard_of(key);
        Ticket {
            shard,
            epoch: self.shards[shard].epoch.load(Ordering::Acquire),
        }
    }

    /// Inserts unless the shard heard of a change since `ticket` was taken.
    fn insert(&self, ticket: Ticket, key: K, value: V, session: u64) -> bool {
        let shard = &self.shards[ticket.shard];
        let mut map = shard.write();
        // Under the lock: an invalidation bumps the epoch before it takes the lock, so either we
        // see its bump here, or it removes what we insert right after.
        if shard.epoch.load(Ordering::Acquire) != ticket.epoch {
            return false;
        }
        let promoted = AtomicI64::new(now_millis());
        map.put(
            key,
            Stamped {
                value,
                session,
                promoted,
            },
        );
        true
    }

    fn forget(&self, key: &K) {
        let shard = &self.shards[self.shard_of(key)];
        shard.epoch.fetch_add(1, Ordering::AcqRel);
        shard.write().pop(key);
    }

    /// No read in flight may insert what it read (a new session starts).
    fn bump_all(&self) {
        for shard in &self.shards {
            shard.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn clear(&self) {
        for shard in &self.shards {
            shard.epoch.fetch_add(1, Ordering::AcqRel);
            shard.write().clear();
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// The grant cache of one token-service process.
pub struct GrantCache {
    installs: Map<InstallId, Arc<Handout>>,
    orgs: Map<OrgId, Arc<[InstallId]>>,
    tracked: AtomicBool,
    /// The tracking connection whose state `tracked` reflects; a disconnection reported by an
    /// older one changes nothing. Entries read in an older session never answer first.
    session: AtomicU64,
    /// Until when (Unix ms) the cache answers first although untracked (Redis just failed).
    redis_down_until: AtomicI64,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    served_in_outage: AtomicU64,
}

impl std::fmt::Debug for GrantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCache")
            .field("coherence", &self.coherence())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GrantCache {
    /// A cache of at most `capacity` installs and as many orgs; untracked until a tracking
    /// connection reports in ([`GrantCache::tracking_started`]).
    pub fn new(capacity: usize) -> Self {
        GrantCache {
            installs: Map::new(capacity),
            orgs: Map::new(capacity),
            tracked: AtomicBool::new(false),
            session: AtomicU64::new(0),
            redis_down_until: AtomicI64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            served_in_outage: AtomicU64::new(0),
        }
    }

    pub fn coherence(&self) -> Coherence {
        if self.tracked.load(Ordering::Acquire) {
            Coherence::Tracked
        } else {
            Coherence::Untracked
        }
    }

    /// May the cache answer before Redis is asked? While tracked; and for a moment after Redis
    /// failed to answer (an outage), when every entry is as good as Redis's last word. The
    /// lookups ([`GrantCache::install`], [`GrantCache::org`]) apply it per entry themselves.
    #[cfg(test)]
    pub fn answers_first(&self) -> bool {
        self.coherence() == Coherence::Tracked || self.redis_down()
    }

    fn redis_down(&self) -> bool {
        now_millis() < self.redis_down_until.load(Ordering::Relaxed)
    }

    /// Is an entry read in `session` as good as Redis right now?
    fn current(&self, session: u64) -> bool {
        (self.coherence() == Coherence::Tracked && session == self.session.load(Ordering::Acquire))
            || self.redis_down()
    }

    /// The cached hand-out of `id` when it may answer before Redis is asked: read while the
    /// current tracking connection was up (or Redis just failed).
    pub fn install(&self, id: &InstallId) -> Option<Arc<Handout>> {
        let found = self
            .installs
            .get(id)
            .filter(|(_, session)| self.current(*session));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|(h, _)| h)
    }

    /// The cached hand-out of `id`, however old, to stand in for Redis when it does not answer.
    pub fn stand_in_install(&self, id: &InstallId) -> Option<Arc<Handout>> {
        self.installs.get(id).map(|(h, _)| h)
    }

    /// As [`GrantCache::install`], for an org's installs.
    pub fn org(&self, org: &OrgId) -> Option<Arc<[InstallId]>> {
        self.orgs
            .get(org)
            .filter(|(_, session)| self.current(*session))
            .map(|(ids, _)| ids)
    }

    /// As [`GrantCache::stand_in_install`], for an org's installs.
    pub fn stand_in_org(&self, org: &OrgId) -> Option<Arc<[InstallId]>> {
        self.orgs.get(org).map(|(ids, _)| ids)
    }

    /// Taken before reading an install from Redis.
    pub fn install_ticket(&self, id: &InstallId) -> Ticket {
        self.installs.ticket(id)
    }

    pub fn org_ticket(&self, org: &OrgId) -> Ticket {
        self.orgs.ticket(org)
    }

    /// Keeps what was read under `ticket`, unless the install changed since, or the cache
    /// cannot know whether it did (untracked: nothing would tell it of the next change).
    pub fn insert_install(&self, ticket: Ticket, handout: Arc<Handout>) {
        if self.coherence() == Coherence::Tracked {
            let session = self.session.load(Ordering::Acquire);
            self.installs
                .insert(ticket, handout.install_id, handout, session);
        }
    }

    pub fn insert_org(&self, ticket: Ticket, org: OrgId, installs: Arc<[InstallId]>) {
        if self.coherence() == Coherence::Tracked {
            let session = self.session.load(Ordering::Acquire);
            self.orgs.insert(ticket, org, installs, session);
        }
    }

    /// The install changed (here or elsewhere): its entry goes, and a read in flight does not
    /// put the old value back.
    pub fn forget_install(&self, id: &InstallId) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.installs.forget(id);
    }

    pub fn forget_org(&self, org: &OrgId) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.orgs.forget(org);
    }

    /// Everything may have changed (Redis was flushed, or changes may have been missed).
    pub fn clear(&self) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.installs.clear();
        self.orgs.clear();
    }

    /// A tracking connection (`session`) now hears every change. Entries read before it may
    /// have missed some: they answer first no more (they may still stand in through an outage)
    /// and a read in flight does not insert. Then the cache answers first with what is read now.
    pub fn tracking_started(&self, session: u64) {
        self.tracked.store(false, Ordering::Release);
        self.session.store(session, Ordering::Release);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.installs.bump_all();
        self.orgs.bump_all();
        self.redis_down_until.store(0, Ordering::Relaxed);
        self.tracked.store(true, Ordering::Release);
    }

    /// The tracking connection `session` is gone: changes may be missed from now on. Entries
    /// stay, for an outage; Redis answers first.
    pub fn tracking_lost(&self, session: u64) {
        if self.session.load(Ordering::Acquire) == session {
            self.tracked.store(false, Ordering::Release);
        }
    }

    /// Redis did not answer: for a moment the cache answers first, so an outage's callers do
    /// not each wait for a Redis timeout.
    pub fn redis_failed(&self) {
        self.redis_down_until
            .store(now_millis() + OUTAGE_HOLD_MS, Ordering::Relaxed);
    }

    /// A token was handed out from the cache because Redis did not answer.
    pub fn served_in_outage(&self) {
        self.served_in_outage.fetch_add(1, Ordering::Relaxed);
    }

    /// Entries held: installs, orgs.
    pub fn len(&self) -> (usize, usize) {
        (self.installs.len(), self.orgs.len())
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            served_in_outage: self.served_in_outage.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::grant::{Grant, tests::sample};

    fn handout(id: InstallId, token: &str) -> Arc<Handout> {
        let mut g: Grant = sample(id, 3600, now_millis() + 3_600_000);
        g.access_token = token.to_owned().into();
        Arc::new(Handout::from(&g))
    }

    fn tracked(capacity: usize) -> GrantCache {
        let c = GrantCache::new(capacity);
        c.tracking_started(1);
        c
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let c = tracked(10);
        let id = InstallId::new_random();
        let ticket = c.install_ticket(&id);
        c.forget_install(&id); // the change lands while the read is out
        c.insert_install(ticket, handout(id, "old"));
        assert!(c.install(&id).is_none());
        let ticket = c.install_ticket(&id);
        c.insert_install(ticket, handout(id, "new"));
        assert!(c.install(&id).is_some());
    }

    #[test]
    fn untracked_inserts_nothing_and_a_new_session_starts_empty() {
        let c = GrantCache::new(10);
        let id = InstallId::new_random();
        c.insert_install(c.install_ticket(&id), handout(id, "t"));
        assert!(c.install(&id).is_none(), "untracked: nothing is kept");
        c.tracking_started(7);
        c.insert_install(c.install_ticket(&id), handout(id, "t"));
        assert!(c.answers_first());
        // A disconnection of an older connection changes nothing.
        c.tracking_lost(6);
        assert_eq!(c.coherence(), Coherence::Tracked);
        c.tracking_lost(7);
        assert_eq!(c.coherence(), Coherence::Untracked);
        assert!(!c.answers_first());
        assert!(c.install(&id).is_none(), "Redis answers first");
        assert!(c.stand_in_install(&id).is_some(), "kept for an outage");
        c.redis_failed();
        assert!(c.answers_first(), "Redis just failed");
        c.tracking_started(8);
        assert!(c.install(&id).is_none(), "changes may have been missed");
        assert!(c.stand_in_install(&id).is_some(), "but it may stand in");
        c.insert_install(c.install_ticket(&id), handout(id, "t2"));
        assert!(c.install(&id).is_some(), "read again in this session");
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let c = tracked(SHARDS * 2);
        let ids: Vec<InstallId> = (0..SHARDS * 8).map(|_| InstallId::new_random()).collect();
        for id in &ids {
            c.insert_install(c.install_ticket(id), handout(*id, "t"));
        }
        assert!(c.len().0 <= SHARDS * 2, "{:?}", c.len());
        // The last one inserted is the most recently used of its shard.
        assert!(c.install(ids.last().unwrap()).is_some());
    }

    #[test]
    fn a_lookup_moves_its_entry_to_the_lru_front_at_most_once_a_second() {
        // Three keys of one shard, which holds two.
        let map: Map<InstallId, u32> = Map::new(SHARDS * 2);
        let a = InstallId::new_random();
        let same_shard = || loop {
            let id = InstallId::new_random();
            if map.shard_of(&id) == map.shard_of(&a) {
                break id;
            }
        };
        let (b, c) = (same_shard(), same_shard());
        let put = |id: InstallId, v: u32| assert!(map.insert(map.ticket(&id), id, v, 0));
        let age = |id: &InstallId| {
            let shard = map.shards[map.shard_of(id)].read();
            shard.peek(id).unwrap().promoted.store(0, Ordering::Relaxed);
        };

        // Looked up long after it was promoted: moved to the front, so `b` goes first.
        put(a, 1);
        put(b, 2);
        age(&a);
        assert_eq!(map.get(&a), Some((1, 0)));
        put(c, 3);
        assert_eq!(map.get(&a), Some((1, 0)));
        assert_eq!(map.get(&b), None, "the least recently used left");

        // Looked up within a second of its promotion: the order stays (coarse recency).
        put(b, 2);
        assert_eq!(map.get(&c), Some((3, 0)));
        put(a, 1);
        assert_eq!(map.get(&c), None, "c was not promoted again so soon");
    }

    #[test]
    fn debug_shows_no_token() {
        let c = tracked(4);
        let id = InstallId::new_random();
        c.insert_install(c.install_ticket(&id), handout(id, "snyk_at_secret"));
        let shown = format!("{c:?} {:?}", c.install(&id).unwrap());
        assert!(!shown.contains("snyk_at_secret"), "{shown}");
    }
}
