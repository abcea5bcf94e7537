//! The grant cache kept coherent with this replica's own writes: each write drops what it changes.
//! Writes of other clients reach the cache through `store::tracking`.

use crate::{
    cache::GrantCache,
    grant::{InstallId, Org, OrgId},
};

/// Drops the cache entries of what a write changes when the write is over, whatever its outcome
/// (a write that failed may still have landed), also when its future is dropped half way.
pub(super) struct Changed<'a> {
    cache: &'a GrantCache,
    install: Option<InstallId>,
    orgs: Vec<OrgId>,
}

impl<'a> Changed<'a> {
    pub(super) fn grant(cache: &'a GrantCache, install: InstallId, orgs: &[Org]) -> Self {
        Changed {
            cache,
            install: Some(install),
            orgs: orgs.iter().map(|o| o.id).collect(),
        }
    }

    pub(super) fn org(cache: &'a GrantCache, org: OrgId) -> Self {
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
