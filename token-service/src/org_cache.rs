//! The in-process org -> install choice of `GetAccessToken(org_id)`, so the hot path stays at one
//! Redis round trip (the grant read). Short-lived on purpose: other replicas' choices catch up
//! within [`ORG_CACHE_TTL`] (docs/design.md, "Orgs").

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::grant::{InstallId, OrgId};

const ORG_CACHE_TTL: Duration = Duration::from_secs(30);
const ORG_CACHE_MAX: usize = 100_000;

/// org -> install, as last read from Redis, for [`ORG_CACHE_TTL`]. The mapping only changes when
/// an org is installed again or its install deleted; both are caught on use (see
/// `service::TokenApi::token_for`).
#[derive(Debug, Default)]
pub(crate) struct OrgCache {
    // A std mutex: held for one map operation, never across an await.
    entries: Mutex<HashMap<OrgId, (InstallId, Instant)>>,
}

impl OrgCache {
    pub(crate) fn get(&self, org: &OrgId) -> Option<InstallId> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(org)
            .filter(|(_, at)| at.elapsed() < ORG_CACHE_TTL)
            .map(|(id, _)| *id)
    }

    pub(crate) fn put(&self, org: OrgId, id: InstallId) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= ORG_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < ORG_CACHE_TTL);
            if entries.len() >= ORG_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(org, (id, Instant::now()));
    }

    pub(crate) fn forget(&self, org: &OrgId) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(org);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn org() -> OrgId {
        OrgId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    #[test]
    fn a_choice_is_kept_replaced_and_forgotten() {
        let cache = OrgCache::default();
        let (org, first, second) = (org(), InstallId::new_random(), InstallId::new_random());
        assert_eq!(cache.get(&org), None);
        cache.put(org, first);
        assert_eq!(cache.get(&org), Some(first));
        cache.put(org, second);
        assert_eq!(cache.get(&org), Some(second));
        cache.forget(&org);
        assert_eq!(cache.get(&org), None);
    }

    #[test]
    fn a_full_cache_starts_over_rather_than_grow() {
        let cache = OrgCache::default();
        let id = InstallId::new_random();
        let first = org();
        cache.put(first, id);
        for _ in 1..ORG_CACHE_MAX {
            cache.put(org(), id);
        }
        assert_eq!(cache.get(&first), Some(id));
        let last = org();
        cache.put(last, id);
        assert_eq!(cache.get(&first), None, "every entry is fresh, so all go");
        assert_eq!(cache.get(&last), Some(id));
    }
}
