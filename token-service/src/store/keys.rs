//! The Redis keys of token-service, by what they hold. docs/design.md ("Redis keys") lists who
//! writes each and under which fence. Every key of one install shares the `{install_id}` hash tag,
//! so the scripts that touch a grant and its lease together stay on one Redis Cluster slot.

use crate::grant::{InstallId, OrgId};

/// The Redis Stream every lifecycle event is appended to (`store::events`).
pub(super) const EVENTS_KEY: &str = "snykapps:events";
/// Every install id (score 0, ordered by id), for paging.
pub(super) const INSTALLS: &str = "snykapps:installs";
/// ACTIVE installs whose refresh token expires, scored by that expiry (ms): the keep-alive's
/// work list and the "shortest remaining refresh-token life" gauge.
pub(super) const KEEPALIVE: &str = "snykapps:keepalive";

/// The prefixes of the keys the grant cache mirrors (tracked by `store::tracking`).
pub(crate) const GRANT_PREFIX: &str = "snykapps:grant:";
pub(crate) const ORG_PREFIX: &str = "snykapps:org-installs:";

pub(super) fn grant_key(id: &InstallId) -> String {
    format!("{GRANT_PREFIX}{{{id}}}")
}
pub(super) fn lease_key(id: &InstallId) -> String {
    format!("snykapps:lease:{{{id}}}")
}
/// The install's Snyk request budget: its schedule and its pause (`store::budget`).
pub(super) fn budget_key(id: &InstallId) -> String {
    format!("snykapps:budget:{{{id}}}")
}
/// Every install that covers the org, scored by its creation time (newest = highest).
pub(super) fn org_key(id: &OrgId) -> String {
    format!("{ORG_PREFIX}{{{id}}}")
}

/// A key the grant cache mirrors, by what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackedKey {
    Grant(InstallId),
    Org(OrgId),
}

/// The inverse of [`grant_key`] and [`org_key`]; `None` for anything else.
pub(crate) fn parse_tracked_key(key: &[u8]) -> Option<TrackedKey> {
    let key = std::str::from_utf8(key).ok()?;
    let tagged = |rest: &str| rest.strip_prefix('{')?.strip_suffix('}').map(str::to_owned);
    if let Some(rest) = key.strip_prefix(GRANT_PREFIX) {
        return InstallId::parse(&tagged(rest)?).ok().map(TrackedKey::Grant);
    }
    if let Some(rest) = key.strip_prefix(ORG_PREFIX) {
        return OrgId::parse(&tagged(rest)?).ok().map(TrackedKey::Org);
    }
    None
}
/// Before the fallback: the one install that served the org (a string). Read once and migrated.
pub(super) fn legacy_org_key(id: &OrgId) -> String {
    format!("snykapps:org:{{{id}}}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tracked_keys_parse_back() {
        let id = InstallId::new_random();
        assert_eq!(
            parse_tracked_key(grant_key(&id).as_bytes()),
            Some(TrackedKey::Grant(id))
        );
        let org = OrgId::parse("0f8a6b4e-6d6b-4a51-9d7e-0b3c3c1f2a11").unwrap();
        assert_eq!(
            parse_tracked_key(org_key(&org).as_bytes()),
            Some(TrackedKey::Org(org))
        );
        assert_eq!(parse_tracked_key(b"snykapps:grant:nope"), None);
        assert_eq!(parse_tracked_key(lease_key(&id).as_bytes()), None);
    }
}
